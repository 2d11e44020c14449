"""The reports API's routers, one module per area; ``reports_api.app.create_app`` includes them."""
