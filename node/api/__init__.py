"""The HTTP API: the aiohttp application, public and admin routes, the OpenAPI document."""
