"""ASGI entry point for servers: ``uvicorn convergences.asgi:app``."""

from convergences.app import create_app

app = create_app()
