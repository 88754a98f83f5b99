"""Which request heads the gateway's listener answers itself as long-polling (transport/polling.py).

Everything not plainly a long-polling request of Engine.IO 4 must be left to aiohttp (None), which
serves or refuses it as it always did; what is read here must become the environ python-engineio's
aiohttp driver would have built.
"""

from __future__ import annotations

import pytest

from socket_gateway.transport import library_internals as internals
from socket_gateway.transport.polling import encode_response, parse_polling_request, with_body

PATHS = frozenset({"/socket.io/"})
PEER = ("203.0.113.9", 4321)
TARGET = "/socket.io/?EIO=4&transport=polling&t=abc"


def head(request_line: str, *headers: str) -> bytes:
    return "\r\n".join([request_line, "Host: gw.test", *headers]).encode("latin-1")


def parse(raw: bytes, max_body: int = 1000) -> object:
    return parse_polling_request(raw, PATHS, max_body, PEER)


async def test_a_handshake_get_becomes_python_engineios_environ() -> None:
    request = parse_polling_request(
        head(
            f"GET {TARGET} HTTP/1.1",
            "Origin: https://shop.test",
            "X-Forwarded-Proto: https",
            "Accept: */*",
            "accept: text/plain",
        ),
        PATHS,
        1000,
        PEER,
    )
    assert request is not None
    assert (request.method, request.handshake, request.keep_alive, request.content_length) == (
        "GET",
        True,
        True,
        0,
    )
    environ = with_body(request, b"")
    assert environ[internals.PLAIN_REQUEST] is True
    assert environ["QUERY_STRING"] == "EIO=4&transport=polling&t=abc"
    assert environ["PATH_INFO"] == "/socket.io/"
    assert environ["RAW_URI"] == TARGET
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("203.0.113.9", "4321")
    assert environ["HTTP_ORIGIN"] == "https://shop.test"
    assert environ["HTTP_ACCEPT"] == "*/*,text/plain"  # repeated headers joined, as the driver does
    assert environ["wsgi.url_scheme"] == "https"
    assert await environ["wsgi.input"].read() == b""


async def test_a_post_carries_its_length_and_type_and_its_body() -> None:
    sid_target = "/socket.io/?EIO=4&transport=polling&sid=S1"
    request = parse_polling_request(
        head(
            f"POST {sid_target} HTTP/1.1",
            "Content-Type: text/plain",
            "Content-Length: 4",
            "Connection: keep-alive, Close",
        ),
        PATHS,
        1000,
        PEER,
    )
    assert request is not None
    assert (request.handshake, request.keep_alive, request.content_length) == (False, False, 4)
    environ = with_body(request, b"40{}")
    assert (environ["CONTENT_LENGTH"], environ["CONTENT_TYPE"]) == ("4", "text/plain")
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert await environ["wsgi.input"].readexactly(4) == b"40{}"


@pytest.mark.parametrize(
    "raw",
    [
        head(f"GET {TARGET} HTTP/1.0"),  # HTTP/1.0: other keep-alive rules
        head(f"PUT {TARGET} HTTP/1.1"),
        head(f"GET {TARGET}  HTTP/1.1"),
        head("GET /other/?EIO=4&transport=polling HTTP/1.1"),
        head("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1"),
        head("GET /socket.io/?EIO=4 HTTP/1.1"),
        head(f"GET {TARGET}&j=0 HTTP/1.1"),  # JSONP
        head(f"GET {TARGET} HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"),
        head(f"POST {TARGET}&sid=S HTTP/1.1", "Transfer-Encoding: chunked"),
        head(f"POST {TARGET}&sid=S HTTP/1.1", "Expect: 100-continue", "Content-Length: 2"),
        head(f"POST {TARGET}&sid=S HTTP/1.1"),  # no length
        head(f"POST {TARGET}&sid=S HTTP/1.1", "Content-Length: 1001"),  # over the payload limit
        head(f"POST {TARGET}&sid=S HTTP/1.1", "Content-Length: 2", "Content-Length: 2"),
        head(f"POST {TARGET}&sid=S HTTP/1.1", "Content-Length: -2"),
        head(
            f"POST {TARGET}&sid=S HTTP/1.1", "Content-Length: \xb2"
        ),  # "²": a digit to str.isdigit, not ASCII
        head(f"GET {TARGET} HTTP/1.1", "Content-Length: 3"),  # a body on a GET
        head(f"GET {TARGET} HTTP/1.1", " Folded: header"),
        head(f"GET {TARGET} HTTP/1.1", "Bad Name: x"),
        head(f"GET {TARGET} HTTP/1.1", "NoColon"),
        head(f"GET {TARGET} HTTP/1.1", "X-Control: a\x01b"),
    ],
)
def test_anything_else_is_left_to_aiohttp(raw: bytes) -> None:
    assert parse(raw) is None


def test_the_answer_is_written_with_its_length_and_closes_only_when_asked() -> None:
    answer = internals.PlainResponse("200 OK", [("Content-Type", "text/plain")], b"ok")
    assert encode_response(answer, keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
    )
    assert encode_response(answer, keep_alive=False).endswith(b"Connection: close\r\n\r\nok")
