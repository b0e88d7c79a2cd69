"""The request and answer bodies of ``stgraph serve`` as pydantic models: they check JSON requests and give
the OpenAPI schema shown at ``/docs``. Arrays follow stgraph's layout without the batch axis: ``[T, N, C]``."""
from __future__ import annotations

from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field

Reading = Optional[float]


class CovariateTable(BaseModel):
    """One covariate source of the run over the request's window, laid out as its covariate CSV
    (:mod:`stgraph.serve.covariates`)."""

    model_config = ConfigDict(extra="forbid")
    timestamps: list[str] = Field(description="K ISO timestamps without UTC offset, oldest first, covering the input "
                                              "steps (and the forecast steps for a source known ahead)", min_length=1)
    columns: list[Union[str, int]] = Field(description="M columns: sensor ids (a per-sensor source; sensors left out "
                                                       "are missing) or the source's series names (shared, events)",
                                           min_length=1)
    values: Union[list[list[Reading]], list[list[list[Reading]]]] = Field(
        description="[K][M] values ([K][M][C] for a per-sensor source of C channels); null for a missing value; NaN "
                    "and infinity are refused")


class Report(BaseModel):
    """One text report, as a row of a reports file (:mod:`stgraph.io.reports`)."""

    model_config = ConfigDict(extra="forbid")
    timestamp: str = Field(description="when it was published (ISO, no UTC offset); it reaches the series from then")
    text: str = Field(description="the words", min_length=1)
    sensor: Optional[Union[str, int]] = Field(None, description="the sensor it concerns (else lat/lon, or neither: "
                                                                "network-wide)")
    lat: Optional[float] = None
    lon: Optional[float] = None
    end: Optional[str] = Field(None, description="until when it holds (ISO), optional")
    duration: Optional[Union[str, float]] = Field(None, description="or for how long: minutes, or e.g. '90min'")


class ReportList(BaseModel):
    """The text reports of a run's reports source published up to the request's last step (older ones still
    reach the window until their end)."""

    model_config = ConfigDict(extra="forbid")
    reports: list[Report] = Field(description="the reports, any order; [] for none")


class ForecastRequest(BaseModel):
    """The latest ``input_len`` (or more) readings of every sensor of the run."""

    model_config = ConfigDict(extra="forbid")
    timestamps: list[str] = Field(description="T ISO timestamps without UTC offset, oldest first, one run "
                                              "interval apart", min_length=1)
    sensors: list[Union[str, int]] = Field(description="N sensor ids, every sensor of the run once, any order",
                                           min_length=1)
    values: Union[list[list[Reading]], list[list[list[Reading]]]] = Field(
        description="[T][N] readings (one channel) or [T][N][C]; null for a missing reading (the run's null "
                    "convention); NaN and infinity are refused")
    covariates: Optional[dict[str, Union[CovariateTable, ReportList]]] = Field(
        None, description="for a run trained with covariate files: each time-varying source by name (its file's "
                          "stem), a reports source as {reports: [...]}; static features are the run's own. JSON "
                          "bodies only (not CSV)")


class ForecastAnswer(BaseModel):
    """A forecast in data units: ``forecast`` (and ``std``, ``q05``, ``q50``, ``q95`` when probabilistic)
    ``[T_out][N][C_out]``."""

    issued_at: str = Field(description="timestamp of the last input step")
    steps: list[str] = Field(description="T_out timestamps of the forecast steps")
    sensors: list[str]
    channels: list[str]
    forecast: list[list[list[float]]]
    probabilistic: bool
    null_convention: str
    std: Optional[list[list[list[float]]]] = None
    q05: Optional[list[list[list[float]]]] = None
    q50: Optional[list[list[list[float]]]] = None
    q95: Optional[list[list[list[float]]]] = None


class ErrorAnswer(BaseModel):
    """Every refused request: ``detail`` names the field at fault and says what was wrong."""

    detail: list[dict] = Field(description="[{'loc': ['body', field], 'msg': text, 'type': kind}]")


class Health(BaseModel):
    status: str
    model: str
    sensors: int
