"""The ASGI application: routes, bodies, errors and streams over HTTP."""
