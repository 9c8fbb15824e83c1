"""A carbon-intensity server on 127.0.0.1 for the tests: the routes of the Green Software
Foundation's Carbon Aware SDK (``/emissions/forecasts/current``, ``/emissions/bylocations``)
and of Electricity Maps (``/v3/carbon-intensity/forecast``), answering from a forecast the test
sets (a list of (Unix seconds, gCO2e/kWh)), in a thread of its own."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "em-secret-token-0123456789"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class IntensityServer:
    """Serves ``points`` (set them) in the shape of either API; ``requests`` counts what it
    answered; ``forecasts`` False makes the SDK's forecast route 404 (the SDK's JSON data
    source has none); ``broken`` answers every route with text that is not JSON."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []
        self.step_minutes = 60
        self.requests: list[str] = []
        self.forecasts = True
        self.broken = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                server.requests.append(url.path)
                status, body = server.answer(url.path, query, self.headers.get("auth-token"))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def answer(self, path: str, query: dict[str, str], token: str | None
               ) -> tuple[int, object]:
        if self.broken:
            return 200, b"<html>not json</html>"
        if path == "/emissions/forecasts/current":
            if not self.forecasts:
                return 404, {"title": "Not Found"}
            location = query.get("location", "eastus")
            return 200, [{"generatedAt": iso(self.points[0][0]), "location": location,
                          "dataStartAt": iso(self.points[0][0]),
                          "dataEndAt": iso(self.points[-1][0]), "windowSize": 5,
                          "optimalDataPoints": [],
                          "forecastData": [{"location": location, "timestamp": iso(t),
                                            "duration": self.step_minutes, "value": v}
                                           for t, v in self.points]}]
        if path == "/emissions/bylocations":
            location = query.get("location", "eastus")
            minutes = self.step_minutes
            return 200, [{"location": location, "time": iso(t), "rating": v,
                          "duration": f"{minutes // 60:02d}:{minutes % 60:02d}:00"}
                         for t, v in self.points]
        if path == "/v3/carbon-intensity/forecast":
            if token != TOKEN:
                return 401, {"error": "invalid auth-token"}
            return 200, {"zone": query.get("zone"), "updatedAt": iso(self.points[0][0]),
                         "forecast": [{"carbonIntensity": v, "datetime": iso(t)}
                                      for t, v in self.points]}
        return 404, {"error": "no such route"}


@pytest.fixture
def intensity_server() -> Iterator[IntensityServer]:
    server = IntensityServer()
    try:
        yield server
    finally:
        server.close()
