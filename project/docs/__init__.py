"""The API's OpenAPI document and the page that renders it."""
