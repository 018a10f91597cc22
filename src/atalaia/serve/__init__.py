"""The door-access service around a face run's int8 model: store (SQLite/PostgreSQL), web app, MQTT."""
