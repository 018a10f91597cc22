"""The door-access service around a face run's int8 model: store (SQLite/PostgreSQL), web app, MQTT.

Modules: `store` (one schema on SQLite or PostgreSQL, versioned migrations, outbox), `auth` (KDF, tokens, rate
limits), `mqtt` (events, retained state, Home Assistant discovery, device topic, webhook), `app` (FastAPI + page).
"""

__all__ = ["app", "auth", "mqtt", "store"]
