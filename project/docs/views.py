"""`/docs`: a self-hosted Swagger UI (no CDN is needed) of `/openapi.json`."""

from importlib.resources import files

from flask import Blueprint, Response, render_template, send_from_directory
from werkzeug.exceptions import NotFound

docs_blueprint = Blueprint(
    "docs",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/docs/static",
)

# Swagger UI's files, as the swagger-ui-py package ships them.
SWAGGER_UI_DIR = str(files("swagger_ui") / "static")
SWAGGER_UI_FILES = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}


@docs_blueprint.get("/docs")
def docs() -> str:
    """Render the API documentation for people."""
    return render_template("docs/docs.html")


@docs_blueprint.get("/docs/swagger-ui/<name>")
def swagger_ui_file(name: str) -> Response:
    """Serve the few Swagger UI files the docs page uses."""
    if name not in SWAGGER_UI_FILES:
        raise NotFound()
    return send_from_directory(SWAGGER_UI_DIR, name, max_age=86400)
