"""The OpenAPI document (node/api/openapi.py) on its own: exact where a schema can be."""

from __future__ import annotations

import re

import pytest

from node.api.common import ApiError, parse_host_port, parse_ip
from node.api.openapi import ADDRESS_FORMAT, openapi_spec

SPEC = openapi_spec("test", "regtest", "robol")


def operations():
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def body_schema(path: str, method: str = "post") -> dict:
    return SPEC["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def test_every_operation_has_its_own_id():
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids))
    assert SPEC["paths"]["/tx/{txid}"]["head"]["operationId"] == "headTx"


def test_every_path_parameter_is_constrained():
    for _, path, op in operations():
        for param in op.get("parameters", []):
            if param["in"] != "path":
                continue
            schema = param["schema"]
            assert "pattern" in schema or "format" in schema or "anyOf" in schema, (path, param)
            if "pattern" in schema:
                re.compile(schema["pattern"])


def test_every_integer_query_parameter_is_bounded():
    for method, path, op in operations():
        for param in op.get("parameters", []):
            if param["in"] == "query" and param["schema"].get("type") == "integer":
                assert {"minimum", "maximum"} <= set(param["schema"]), (method, path, param)


@pytest.mark.parametrize(
    "path,required",
    [
        ("/mine", ["address", "blocks"]),
        ("/bans", ["host"]),
        ("/peers", ["connect"]),
        ("/tx", ["hex"]),
        ("/txs", ["txs"]),
        ("/miner", ["enabled"]),
    ],
)
def test_fields_the_server_requires_are_required(path, required):
    assert body_schema(path)["required"] == required


def test_mine_address_optional_with_a_miner_address():
    spec = openapi_spec("test", "regtest", "robol", address_required=False)
    mine = spec["paths"]["/mine"]["post"]["requestBody"]["content"]["application/json"]
    assert mine["schema"]["required"] == ["blocks"]
    assert mine["schema"]["properties"]["address"]["nullable"] is True


def test_bounds_match_the_server():
    ban = body_schema("/bans")["properties"]
    assert (ban["seconds"]["minimum"], ban["seconds"]["maximum"]) == (1, 10 * 365 * 24 * 3600)
    assert ban["reason"]["maxLength"] == 100
    assert not re.fullmatch(ban["reason"]["pattern"], "a\nb")
    txs = body_schema("/txs")["properties"]["txs"]
    assert (txs["minItems"], txs["maxItems"], txs["items"]["type"]) == (1, 1000, "string")
    assert "pattern" not in txs["items"]  # a string that is not hex is that item's error
    start = SPEC["paths"]["/blocks"]["get"]["parameters"][0]
    assert start["name"] == "start" and start["schema"]["maximum"] == 2**31 - 1
    address = SPEC["paths"]["/address/{address}"]["get"]["parameters"][0]["schema"]
    assert address["format"] == ADDRESS_FORMAT


@pytest.mark.parametrize(
    "text,ok",
    [
        ("127.0.0.1:18444", True),
        ("[::1]:1", True),
        ("::1:65535", True),
        ("node.example:8333", True),
        ("127.0.0.1:0", False),
        ("127.0.0.1:65536", False),
        ("127.0.0.1:08333", False),
        ("127.0.0.1", False),
        ("a b:1", False),
        ("a:1\n", False),
    ],
)
def test_host_port_document_and_parser_agree(text, ok):
    pattern = body_schema("/peers")["properties"]["connect"]["pattern"]
    assert bool(re.fullmatch(pattern, text)) is ok
    if ok:
        parse_host_port(text)
    else:
        with pytest.raises(ApiError):
            parse_host_port(text)


@pytest.mark.parametrize("text", ["10.0.0.1 ", "[::1]", "fe80::1%eth0", "010.0.0.1", "", 5])
def test_ban_hosts_are_plain_ip_addresses(text):
    with pytest.raises(ApiError) as exc:
        parse_ip(text)
    assert exc.value.code == "bad-param"
