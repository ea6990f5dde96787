"""Route syntax and conditions as the local edge hub reads them (runtime/edge/routes, condition)."""

from __future__ import annotations

import pytest

from modelform.runtime.edge.condition import MessageView
from modelform.runtime.edge.routes import RouteError, check_modules, parse_route, parse_routes


def view(body: bytes = b"{}", **properties: str) -> MessageView:
    system = {"content_type": "application/json", "module": "sensor", "output": "rows"}
    return MessageView(properties, system, body)


@pytest.mark.parametrize(
    ("source", "module", "output", "any_output"),
    [
        ("/*", None, None, False),
        ("/messages/*", None, None, False),
        ("/messages/modules/*", None, None, False),
        ("/messages/modules/sensor/*", "sensor", None, False),
        ("/messages/modules/sensor", "sensor", None, False),
        ("/messages/modules/sensor/outputs/*", "sensor", None, True),
        ("/messages/modules/sensor/outputs/rows", "sensor", "rows", True),
    ],
)
def test_sources(source: str, module: str | None, output: str | None, any_output: bool) -> None:
    route = parse_route("r", f"FROM {source} INTO $upstream")
    assert (route.module, route.output, route.any_output) == (module, output, any_output)
    assert route.upstream and route.sink_module is None


def test_brokered_endpoint_sink_and_matching() -> None:
    route = parse_route(
        "r",
        "from /messages/modules/sensor/outputs/rows "
        'into BrokeredEndpoint("/modules/diabetes/inputs/rows")',
    )
    assert (route.sink_module, route.sink_input) == ("diabetes", "rows")
    assert route.matches("sensor", "rows", None)
    assert not route.matches("sensor", "other", None)
    assert not route.matches("other", "rows", None)
    any_output = parse_route("r", "FROM /messages/modules/sensor/outputs/* INTO $upstream")
    assert any_output.matches("sensor", "x", None)
    assert not any_output.matches("sensor", None, None)  # sent without an output
    every = parse_route("r", "FROM /messages/modules/sensor/* INTO $upstream")
    assert every.matches("sensor", None, None) and every.matches("sensor", "x", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("INTO $upstream", "expected 'FROM <source>"),
        ("FROM /messages/* INTO $downstream", "expected 'FROM <source>"),
        ('FROM /messages/* INTO BrokeredEndpoint("/modules/a/outputs/x")', "BrokeredEndpoint must"),
        ("FROM /twinChangeNotifications INTO $upstream", "is not one the local edge hub routes"),
        ("FROM /messages/modules/a/inputs/x INTO $upstream", "is not one"),
        ("FROM /* WHERE temp >> 3 INTO $upstream", "route r:"),
        ("FROM /* WHERE lower(x) = 'a' INTO $upstream", "not supported"),
        ("FROM /* WHERE (a = 1 INTO $upstream", "not closed"),
        ("FROM /* WHERE $nosuch = 1 INTO $upstream", "unknown system property"),
    ],
)
def test_refused_routes_say_why(text: str, message: str) -> None:
    with pytest.raises(RouteError, match="route r") as error:
        parse_route("r", text)
    assert message in str(error.value)


def test_conditions() -> None:
    def where(condition: str, message: MessageView) -> bool:
        return parse_route("r", f"FROM /messages/* WHERE {condition} INTO $upstream").matches(
            "sensor", "rows", message
        )

    assert where("alert = 'yes'", view(alert="yes"))
    assert not where("alert = 'yes'", view(alert="no"))
    assert not where("alert = 'yes'", view())  # undefined is not equal to anything
    assert where("temp > 30 AND NOT (alert = 'no')", view(temp="31.5", alert="yes"))
    assert not where("NOT (alert = 'no')", view())  # NOT undefined is undefined
    assert not where("temp > 30", view(temp="hot"))
    assert where("temp <= 30 OR IS_DEFINED(alert)", view(alert="x", temp="40"))
    assert where("$connectionModuleId = 'sensor' and $outputName <> 'x'", view())
    assert where("$contentType = 'application/json'", view())
    assert where("$body.reading.value >= 2", view(b'{"reading": {"value": 2}}'))
    assert not where("$body.reading.value >= 2", view(b"not json"))
    assert where("name = 'it''s'", view(name="it's"))
    assert where("flag = true", view(b'{"flag": true}', flag="true")) is False  # string vs bool
    assert where("$body.flag = true", view(b'{"flag": true}'))


def test_route_objects_and_unknown_modules() -> None:
    routes = parse_routes(
        {
            "b": {"route": "FROM /messages/modules/a/* INTO $upstream", "priority": 2},
            "a": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": 60},
        }
    )
    assert [(r.name, r.priority, r.ttl_seconds) for r in routes] == [("a", 0, 60), ("b", 2, None)]
    check_modules(routes, {"a"})
    with pytest.raises(RouteError, match="route b: unknown module 'a'"):
        check_modules(routes, {"x"})
    with pytest.raises(RouteError, match="priority must be"):
        parse_routes({"c": {"route": "FROM /* INTO $upstream", "priority": -1}})
    with pytest.raises(RouteError, match="must be a string"):
        parse_routes({"c": 3})
