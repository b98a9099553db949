"""The error tree of DESIGN §3: hierarchy, status mapping, attributes, pickling."""

from __future__ import annotations

import pickle

import pytest

import cloudcreds
from cloudcreds import (
    APIStatusError,
    AuthenticationError,
    CloudConnectionError,
    CloudCredsError,
    CloudTimeoutError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    SecretResolutionError,
    ServerError,
    TooManyRedirectsError,
    UntrustedOriginError,
)
from cloudcreds._errors import status_error

# (class, its direct parent) for every node of the tree drawn in DESIGN §3.
TREE: list[tuple[type[Exception], type[Exception]]] = [
    (CloudCredsError, Exception),
    (ConfigurationError, CloudCredsError),
    (CloudConnectionError, CloudCredsError),
    (CloudTimeoutError, CloudConnectionError),
    (APIStatusError, CloudCredsError),
    (AuthenticationError, APIStatusError),
    (PermissionDeniedError, APIStatusError),
    (NotFoundError, APIStatusError),
    (RateLimitError, APIStatusError),
    (ServerError, APIStatusError),
    (TooManyRedirectsError, APIStatusError),
    (ResponseValidationError, CloudCredsError),
    (SecretResolutionError, CloudCredsError),
    (UntrustedOriginError, SecretResolutionError),
]

STATUS_CLASSES: list[tuple[int, type[APIStatusError]]] = [
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (429, RateLimitError),
    (500, ServerError),
    (501, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
    (599, ServerError),
    (400, APIStatusError),
    (405, APIStatusError),
    (408, APIStatusError),
    (409, APIStatusError),
    (422, APIStatusError),
    (425, APIStatusError),
]

STATUS_SUBCLASSES = [AuthenticationError, PermissionDeniedError, NotFoundError, RateLimitError]


@pytest.mark.parametrize(("cls", "parent"), TREE, ids=[cls.__name__ for cls, _ in TREE])
def test_tree_parent(cls: type[Exception], parent: type[Exception]) -> None:
    assert parent in cls.__bases__
    assert issubclass(cls, CloudCredsError) or cls is CloudCredsError


def test_tree_is_complete_and_exported() -> None:
    exported = {
        obj
        for name in cloudcreds.__all__
        if isinstance(obj := getattr(cloudcreds, name), type) and issubclass(obj, BaseException)
    }
    assert exported == {cls for cls, _ in TREE}


def test_siblings_are_disjoint() -> None:
    # No branch of the tree is a subclass of another branch.
    branches = [
        ConfigurationError,
        CloudConnectionError,
        APIStatusError,
        ResponseValidationError,
        SecretResolutionError,
    ]
    for a in branches:
        for b in branches:
            assert issubclass(a, b) == (a is b)
    for a in [*STATUS_SUBCLASSES, ServerError]:
        for b in [*STATUS_SUBCLASSES, ServerError]:
            assert issubclass(a, b) == (a is b)


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES, ids=[str(s) for s, _ in STATUS_CLASSES])
def test_status_error_maps_status_to_class(status: int, cls: type[APIStatusError]) -> None:
    error = status_error(status, "some detail", url="https://cloud.example/x", request_id="r-1")
    assert type(error) is cls
    assert error.status_code == status
    assert error.detail == "some detail"
    assert error.url == "https://cloud.example/x"
    assert error.request_id == "r-1"


def test_status_error_defaults() -> None:
    error = status_error(404, "Secret not found")
    assert error.url is None
    assert error.request_id is None
    assert str(error) == "404 Secret not found"


def test_message_names_status_detail_url_and_request_id() -> None:
    error = status_error(
        401,
        "Invalid session API key",
        url="https://cloud.example/api/v1/users/me",
        request_id="req-42",
    )
    message = str(error)
    assert "401" in message
    assert "Invalid session API key" in message
    assert "https://cloud.example/api/v1/users/me" in message
    assert "req-42" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://cloud.example/api/v1/users/me?expose_secrets=true",
        "https://cloud.example/api/v1/users/me?token=leaky#frag",
        "https://cloud.example/api/v1/users/me#leaky",
    ],
)
def test_url_and_message_have_no_query_string(url: str) -> None:
    error = status_error(503, "Service Unavailable", url=url)
    assert error.url == "https://cloud.example/api/v1/users/me"
    for text in (str(error), repr(error), error.args[0]):
        assert "?" not in text
        assert "#" not in text
        assert "expose_secrets" not in text
        assert "leaky" not in text


@pytest.mark.parametrize(("cls", "status"), [(c, c.default_status) for c in STATUS_SUBCLASSES])
def test_client_side_error_carries_its_class_status(cls: type[APIStatusError], status: int) -> None:
    # A condition found client-side (masked key, missing name) keeps the class's status.
    error = cls("found client-side")
    assert error.status_code == status
    assert error.detail == "found client-side"
    assert str(error).startswith(f"{status} ")


def test_server_error_default_status_is_5xx() -> None:
    assert 500 <= ServerError("boom").status_code <= 599


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES, ids=[str(s) for s, _ in STATUS_CLASSES])
def test_pickle_round_trip_keeps_attributes(status: int, cls: type[APIStatusError]) -> None:
    error = status_error(status, "the detail", url="https://cloud.example/p", request_id="req-7")
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(clone) is cls
    assert (clone.status_code, clone.detail, clone.url, clone.request_id) == (
        status,
        "the detail",
        "https://cloud.example/p",
        "req-7",
    )
    assert str(clone) == str(error)


@pytest.mark.parametrize(
    "cls",
    [
        CloudCredsError,
        ConfigurationError,
        CloudConnectionError,
        CloudTimeoutError,
        ResponseValidationError,
        SecretResolutionError,
        UntrustedOriginError,
    ],
)
def test_pickle_round_trip_of_plain_errors(cls: type[CloudCredsError]) -> None:
    clone = pickle.loads(pickle.dumps(cls("a message")))  # noqa: S301 - our own bytes
    assert type(clone) is cls
    assert str(clone) == "a message"


def test_errors_are_catchable_by_branch() -> None:
    with pytest.raises(CloudConnectionError):
        raise CloudTimeoutError("timed out")
    with pytest.raises(SecretResolutionError):
        raise UntrustedOriginError("untrusted")
    with pytest.raises(APIStatusError):
        raise status_error(429, "slow down")
    with pytest.raises(CloudCredsError):
        raise status_error(502, "Bad Gateway")
