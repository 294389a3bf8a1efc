"""`/`: the single page; its script talks to the JSON API."""

from flask import Blueprint, render_template

pages_blueprint = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@pages_blueprint.get("/")
def index() -> str:
    """Render the page."""
    return render_template("pages/index.html")
