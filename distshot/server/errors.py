"""The API's error answers: one JSON shape, ``{"error": {"type", "message", "field"}}``,
with the status that says whose problem it is. Never a traceback."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        type_name: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type_name = type_name
        self.message = message
        self.field = field
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(
            self.status, self.type_name, self.message, field=self.field, headers=self.headers
        )


def error_response(
    status: int,
    type_name: str,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"type": type_name, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "Unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def not_found(what: str) -> ApiError:
    return ApiError(404, "NotFound", f"no such {what}")


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
        }
    },
}
