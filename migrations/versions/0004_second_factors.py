"""second factors: mfa_factor, mfa_recovery_code, per-employer 2FA policy, forced re-enrolment, amr.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 05:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import convergences.db

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mfa_factor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('secret_encrypted', sa.Text(), nullable=True),
    sa.Column('last_step', sa.BigInteger(), nullable=True),
    sa.Column('last_used_at', convergences.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('credential_id', sa.String(length=512), nullable=True),
    sa.Column('public_key', sa.Text(), nullable=True),
    sa.Column('sign_count', sa.BigInteger(), nullable=False),
    sa.Column('created_at', convergences.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_mfa_factor_account_id_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_factor')),
    sa.UniqueConstraint('credential_id', name=op.f('uq_mfa_factor_credential_id'))
    )
    op.create_index(op.f('ix_mfa_factor_account_id'), 'mfa_factor', ['account_id'], unique=False)
    op.create_table('mfa_recovery_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('used_at', convergences.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', convergences.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'],
                            name=op.f('fk_mfa_recovery_code_account_id_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_recovery_code'))
    )
    op.create_index(op.f('ix_mfa_recovery_code_account_id'), 'mfa_recovery_code', ['account_id'], unique=False)
    with op.batch_alter_table('employer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mfa_required_for_agents', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mfa_enrolment_required', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('amr', sa.String(length=40), server_default='pwd', nullable=False))
    with op.batch_alter_table('oidc_rp_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('amr', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('oidc_rp_session', schema=None) as batch_op:
        batch_op.drop_column('amr')
    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.drop_column('amr')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('mfa_enrolment_required')
    with op.batch_alter_table('employer', schema=None) as batch_op:
        batch_op.drop_column('mfa_required_for_agents')
    op.drop_index(op.f('ix_mfa_recovery_code_account_id'), table_name='mfa_recovery_code')
    op.drop_table('mfa_recovery_code')
    op.drop_index(op.f('ix_mfa_factor_account_id'), table_name='mfa_factor')
    op.drop_table('mfa_factor')
