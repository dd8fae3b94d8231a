"""CIG staff: the OpenID Connect clients of the catalogue's applications (the protocol side of an
application, registered and managed by the CIG admin)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.applications.models import Application
from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.authz import Actor, Permission, require
from convergences.db import transaction
from convergences.errors import NotFound, ServiceError
from convergences.oidc.models import Client
from convergences.oidc.services import hash_client_secret, new_secret, register_client
from convergences.runtime import Runtime

P = Permission


@dataclass
class ClientInput:
    """The protocol side of an application, as the CIG admin registers it (never a secret)."""

    name: str = ""
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    public: bool = False
    alg: str = "ES256"
    allow_refresh: bool = False
    claims: list[str] = field(default_factory=lambda: ["employer", "roles"])
    pairwise: bool = False


def client_fields(client: Client) -> dict[str, Any]:
    """What the journal records of a client: its settings, never its secret nor the secret's hash."""
    return {"client_id": client.client_id, "name": client.name, "public": client.is_public,
            "redirect_uris": list(client.redirect_uris),
            "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
            "backchannel_logout_uri": client.backchannel_logout_uri, "alg": client.id_token_alg,
            "allow_refresh": client.allow_refresh, "claims": list(client.claims), "pairwise": client.pairwise_sub}


class ClientAdminService:
    """The CIG admin's management of the OpenID Connect clients of an application."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def application_details(self, actor: Actor, application_id: int) -> dict[str, Any]:
        """The application and its OpenID Connect clients. Raises NotAuthorized, NotFound."""
        require(actor, P.CATALOGUE_MANAGE)
        async with transaction(self.rt.maker) as db:
            application = await db.get(Application, application_id)
            if application is None:
                raise NotFound()
            clients = (await db.scalars(select(Client).where(Client.application_id == application_id)
                                        .order_by(Client.id))).all()
            return {"application": application, "clients": list(clients)}

    async def client(self, actor: Actor, application_id: int, client_pk: int) -> dict[str, Any]:
        """One client of one application (404 when the client belongs to another application)."""
        require(actor, P.CATALOGUE_MANAGE)
        async with transaction(self.rt.maker) as db:
            application, client = await _client_of(db, application_id, client_pk)
            return {"application": application, "client": client}

    async def create_client(self, actor: Actor, application_id: int, data: ClientInput) -> tuple[Client, str | None]:
        """Register a client for the application; return it with its secret (None when public), which
        is shown once and stored only as an argon2id hash. Raises NotAuthorized, NotFound."""
        require(actor, P.CATALOGUE_MANAGE)
        async with transaction(self.rt.maker) as db:
            application = await db.get(Application, application_id)
            if application is None:
                raise NotFound()
            slug, app_name = application.slug, application.name
        client_id, secret = await register_client(
            self.rt, application_slug=slug, redirect_uris=data.redirect_uris, public=data.public,
            backchannel_logout_uri=data.backchannel_logout_uri,
            post_logout_redirect_uris=data.post_logout_redirect_uris, alg=data.alg,
            allow_refresh=data.allow_refresh, claims=data.claims, pairwise=data.pairwise,
            name=data.name.strip() or None)
        # register_client commits on its own: the journal entry follows in a second transaction, and
        # the client is removed again if that one fails (no client without its journal entry).
        try:
            async with transaction(self.rt.maker) as db:
                client = await db.scalar(select(Client).where(Client.client_id == client_id))
                assert client is not None
                audit.record(db, actor, Action.CLIENT_CREATE, target_type="oidc_client", target_id=client.id,
                             target_label=f"{client.client_id} ({app_name})", after=client_fields(client),
                             application_id=client.application_id)
        except Exception:
            async with transaction(self.rt.maker) as db:
                await db.execute(delete(Client).where(Client.client_id == client_id))
            raise
        return client, secret

    async def update_client(self, actor: Actor, application_id: int, client_pk: int,
                            data: ClientInput) -> tuple[Client, str | None]:
        """Change a client's settings. A public client made confidential gets a new secret (returned,
        shown once); a confidential client made public loses its secret. Raises NotAuthorized, NotFound."""
        require(actor, P.CATALOGUE_MANAGE)
        secret = None
        async with transaction(self.rt.maker) as db:
            application, client = await _client_of(db, application_id, client_pk)
            before = client_fields(client)
            if client.is_public and not data.public:
                secret = new_secret()
                client.secret_hash = hash_client_secret(self.rt, secret)
            elif data.public:
                client.secret_hash = None
            client.name = data.name.strip() or application.name
            client.redirect_uris = list(data.redirect_uris)
            client.post_logout_redirect_uris = list(data.post_logout_redirect_uris)
            client.backchannel_logout_uri = data.backchannel_logout_uri
            client.is_public = data.public
            client.id_token_alg = data.alg
            client.allow_refresh = data.allow_refresh
            client.claims = list(data.claims)
            client.pairwise_sub = data.pairwise
            after = client_fields(client)
            if before != after:
                audit.record(db, actor, Action.CLIENT_UPDATE, target_type="oidc_client", target_id=client.id,
                             target_label=f"{client.client_id} ({application.name})", before=before,
                             application_id=application.id,
                             after={**after, **({"secret": "régénéré"} if secret else {})})
            return client, secret

    async def rotate_client_secret(self, actor: Actor, application_id: int, client_pk: int) -> tuple[Client, str]:
        """A new secret for a confidential client; the old one stops working at once. Raises
        NotAuthorized, NotFound, ServiceError (public client)."""
        require(actor, P.CATALOGUE_MANAGE)
        secret = new_secret()
        secret_hash = hash_client_secret(self.rt, secret)
        async with transaction(self.rt.maker) as db:
            application, client = await _client_of(db, application_id, client_pk)
            if client.is_public:
                raise ServiceError("Un client public n'a pas de secret : rendez-le d'abord confidentiel.")
            client.secret_hash = secret_hash
            audit.record(db, actor, Action.CLIENT_SECRET_ROTATE, target_type="oidc_client", target_id=client.id,
                         target_label=f"{client.client_id} ({application.name})",
                         after={"client_id": client.client_id}, application_id=application.id)
            return client, secret

    async def delete_client(self, actor: Actor, application_id: int, client_pk: int) -> Client:
        """Remove a client; its codes, tokens and application sessions go with it. Raises NotAuthorized,
        NotFound."""
        require(actor, P.CATALOGUE_MANAGE)
        async with transaction(self.rt.maker) as db:
            application, client = await _client_of(db, application_id, client_pk)
            audit.record(db, actor, Action.CLIENT_DELETE, target_type="oidc_client", target_id=client.id,
                         target_label=f"{client.client_id} ({application.name})", before=client_fields(client),
                         application_id=application.id)
            await db.execute(delete(Client).where(Client.id == client.id))
            return client


async def _client_of(db: AsyncSession, application_id: int, client_pk: int) -> tuple[Application, Client]:
    client = await db.get(Client, client_pk)
    if client is None or client.application_id != application_id:
        raise NotFound()
    application = await db.get(Application, application_id)
    assert application is not None
    return application, client
