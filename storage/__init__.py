"""The run store: SQLAlchemy 2 models, engine/session, RunStore API. Never imports copd."""
