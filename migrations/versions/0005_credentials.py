"""credentials: one-time link purposes (reset, email change), outbox leases, throttle alerts.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26 05:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import convergences.db

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purpose', sa.String(length=20), server_default='invitation', nullable=False))
        batch_op.add_column(sa.Column('new_email', sa.String(length=254), nullable=True))
    with op.batch_alter_table('outbox_mail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', convergences.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('lease_token', sa.String(length=64), nullable=True))
    with op.batch_alter_table('login_throttle', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alerted_at', convergences.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('login_throttle', schema=None) as batch_op:
        batch_op.drop_column('alerted_at')
    with op.batch_alter_table('outbox_mail', schema=None) as batch_op:
        batch_op.drop_column('lease_token')
        batch_op.drop_column('next_attempt_at')
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.drop_column('new_email')
        batch_op.drop_column('purpose')
