"""Import every model so that the metadata (Alembic, create_all) sees all tables."""

from convergences.accounts.models import Account, Invitation
from convergences.applications.models import Application, Grant, Subscription
from convergences.audit.models import AuditEvent
from convergences.db import Base
from convergences.employers.models import Employer, Membership, PortfolioEntry
from convergences.mail.models import OutboxMail
from convergences.security.models import LoginSession, LoginThrottle

__all__ = ["Account", "Application", "AuditEvent", "Base", "Employer", "Grant", "Invitation",
           "LoginSession", "LoginThrottle", "Membership", "OutboxMail", "PortfolioEntry", "Subscription"]
from convergences.oidc.models import (  # noqa: E402
    AuthorizationCode,
    Client,
    LogoutDelivery,
    OAuthToken,
    RpSession,
    SigningKey,
    SubjectSalt,
)

__all__ += ["AuthorizationCode", "Client", "LogoutDelivery", "OAuthToken", "RpSession", "SigningKey", "SubjectSalt"]
from convergences.maintenance.models import InactivityWarning  # noqa: E402
from convergences.reviews.models import ReviewCampaign, ReviewDecision, ReviewScope  # noqa: E402

__all__ += ["InactivityWarning", "ReviewCampaign", "ReviewDecision", "ReviewScope"]
from convergences.audit.models import AuditPersonKey  # noqa: E402
from convergences.rgpd.models import ErasureRequest  # noqa: E402

__all__ += ["AuditPersonKey", "ErasureRequest"]
from convergences.mfa.models import RecoveryCode, SecondFactor  # noqa: E402

__all__ += ["RecoveryCode", "SecondFactor"]
