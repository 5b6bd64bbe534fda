"""Alembic environment of the prediction-log database (run through `python -m service.logdb`)."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations with `python -m service.logdb migrate`, which passes "
                       "the database connection (there is no alembic.ini)")
if connection.dialect.name == "postgresql":
    # Two migrate Jobs (or a Job and an operator) at once wait for each other instead of racing.
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7263540481)")
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
