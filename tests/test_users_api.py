"""The users API: every status code, against the real PostgreSQL test database."""

import pytest
from flask.testing import FlaskClient

from harness.processes import Process, wait_for
from tests.support import assert_problem


def create(client: FlaskClient, username: str = "ada", email: str = "ada@example.com"):
    return client.post("/users/", json={"username": username, "email": email})


def test_create_user_returns_201_with_location(client: FlaskClient) -> None:
    response = create(client, "  ada  ", "Ada@Example.COM")
    assert response.status_code == 201
    body = response.get_json()
    assert body == {
        "id": body["id"],
        "username": "ada",
        "email": "ada@example.com",
        "welcomed_at": None,  # set by send_welcome, queued after the commit
    }
    assert response.headers["Location"] == f"/users/{body['id']}"
    # A worker may have welcomed the user meanwhile: the rest is as created.
    assert client.get(response.headers["Location"]).get_json() | {"welcomed_at": None} == body


@pytest.mark.parametrize(
    ("payload", "bad_fields"),
    [
        ({}, {"username", "email"}),
        ({"username": "", "email": "a@example.com"}, {"username"}),
        ({"username": "   ", "email": "a@example.com"}, {"username"}),
        ({"username": "x" * 129, "email": "a@example.com"}, {"username"}),
        ({"username": 42, "email": "a@example.com"}, {"username"}),
        ({"username": "ada", "email": "not-an-email"}, {"email"}),
        ({"username": "ada", "email": "a@b"}, {"email"}),
        ({"username": "ada", "email": "x" * 120 + "@example.com"}, {"email"}),
        ({"username": None, "email": ["a@example.com"]}, {"username", "email"}),
    ],
)
def test_invalid_user_returns_422_naming_each_field(
    client: FlaskClient, payload: dict, bad_fields: set[str]
) -> None:
    body = assert_problem(client.post("/users/", json=payload), 422)
    assert set(body["errors"]) == bad_fields
    assert client.get("/users/").get_json()["items"] == []


def test_username_of_128_characters_is_accepted(client: FlaskClient) -> None:
    assert create(client, "x" * 128).status_code == 201


@pytest.mark.parametrize("body", ["[]", '"ada"', "42", "null"])
def test_body_that_is_not_an_object_returns_422(client: FlaskClient, body: str) -> None:
    response = client.post("/users/", data=body, content_type="application/json")
    assert_problem(response, 422)


def test_malformed_json_returns_400(client: FlaskClient) -> None:
    response = client.post("/users/", data='{"username": ', content_type="application/json")
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "body",
    ['{"username": "\\ud800", "email": "a@example.com"}', "[" * 30000 + "]" * 30000],
    ids=["lone-surrogate", "nested-30000-deep"],
)
def test_json_no_database_can_store_returns_400(client: FlaskClient, body: str) -> None:
    response = client.post("/users/", data=body, content_type="application/json")
    assert_problem(response, 400)


def test_body_that_is_not_json_returns_415(client: FlaskClient) -> None:
    response = client.post("/users/", data="username=ada", content_type="text/plain")
    assert_problem(response, 415)


def test_body_over_max_content_length_returns_413(client: FlaskClient) -> None:
    payload = '{"username": "' + "x" * (70 * 1024) + '"}'
    response = client.post("/users/", data=payload, content_type="application/json")
    assert_problem(response, 413)


def test_duplicate_username_returns_409(client: FlaskClient) -> None:
    assert create(client).status_code == 201
    body = assert_problem(create(client, "ada", "other@example.com"), 409)
    assert body["errors"] == {"username": "is already taken"}


def test_duplicate_email_ignoring_case_returns_409(client: FlaskClient) -> None:
    assert create(client).status_code == 201
    body = assert_problem(create(client, "grace", "ADA@example.com"), 409)
    assert body["errors"] == {"email": "is already taken"}


def test_get_unknown_user_returns_404(client: FlaskClient) -> None:
    assert_problem(client.get("/users/12345"), 404)
    assert_problem(client.get("/users/99999999999999999999999"), 404)


def test_patch_user_changes_fields(client: FlaskClient) -> None:
    user_id = create(client).get_json()["id"]
    response = client.patch(f"/users/{user_id}", json={"username": "lovelace"})
    assert response.status_code == 200
    expected = {"id": user_id, "username": "lovelace", "email": "ada@example.com"}
    assert response.get_json() | expected == response.get_json()


def test_patch_user_validates_and_detects_conflicts(client: FlaskClient) -> None:
    user_id = create(client).get_json()["id"]
    create(client, "grace", "grace@example.com")
    assert_problem(client.patch(f"/users/{user_id}", json={"email": "nope"}), 422)
    assert_problem(client.patch(f"/users/{user_id}", json={}), 422)
    assert_problem(client.patch(f"/users/{user_id}", json={"username": "grace"}), 409)
    assert_problem(client.patch("/users/999", json={"username": "x"}), 404)
    assert client.get(f"/users/{user_id}").get_json()["username"] == "ada"


def test_delete_user_returns_204_then_404(client: FlaskClient) -> None:
    user_id = create(client).get_json()["id"]
    response = client.delete(f"/users/{user_id}")
    assert response.status_code == 204
    assert response.data == b""
    assert_problem(client.get(f"/users/{user_id}"), 404)
    assert_problem(client.delete(f"/users/{user_id}"), 404)


def test_list_users_pages_by_id_with_next_links(client: FlaskClient) -> None:
    ids = [create(client, f"user{i}", f"user{i}@example.com").get_json()["id"] for i in range(5)]
    seen: list[int] = []
    url = "/users/?limit=2"
    while url:
        page = client.get(url).get_json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        url = page["next"]
    assert seen == ids
    assert client.get("/users/").get_json()["next"] is None


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=abc", "limit=-1", "after=x", "after=-3", "limit=1.5"]
)
def test_bad_limit_or_after_returns_422(client: FlaskClient, query: str) -> None:
    body = assert_problem(client.get(f"/users/?{query}"), 422)
    assert set(body["errors"]) == {query.split("=")[0]}


def test_unknown_route_and_method_are_problems(client: FlaskClient) -> None:
    assert_problem(client.get("/nowhere"), 404)
    response = client.put("/users/")
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


def test_a_new_user_is_welcomed_by_a_worker(client: FlaskClient, worker: Process) -> None:
    location = create(client).headers["Location"]

    def welcome_tasks() -> list[dict] | None:
        tasks = client.get("/tasks/?name=send_welcome").get_json()["items"]
        return tasks if tasks and tasks[0]["state"] == "SUCCESS" else None

    # Its own task, not a user id alone: ids restart after each test, and a welcome queued
    # by an earlier test may still be on its way.
    tasks = wait_for(welcome_tasks, 30, "send_welcome to succeed")
    assert [(task["state"], task["deliveries"]) for task in tasks] == [("SUCCESS", 1)]
    assert client.get(location).get_json()["welcomed_at"].endswith("Z")


def test_create_user_with_a_reused_idempotency_key_creates_nobody(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "signup-ada"}
    payload = {"username": "ada", "email": "ada@example.com"}
    first = client.post("/users/", json=payload, headers=headers)
    again = client.post("/users/", json=payload, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    changed = {**payload, "username": "bob"}
    assert_problem(client.post("/users/", json=changed, headers=headers), 422)
    assert len(client.get("/users/").get_json()["items"]) == 1
    # A request that failed stored nothing: the key can be used again once it can succeed.
    taken = client.post("/users/", json=payload, headers={"Idempotency-Key": "signup-2"})
    assert_problem(taken, 409)
    assert client.get("/tasks/?name=send_welcome").get_json()["items"][0]["id"]
