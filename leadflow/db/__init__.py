"""PostgreSQL access: connections, the schema's migrations, and the tenant (broker) registry."""
