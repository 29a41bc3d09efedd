"""The chart a human reads: written as a real PNG with history, forecast, bands and capacity."""
from __future__ import annotations

import numpy as np
from PIL import Image
from registry_lifecycle.forecast import chart


def test_chart_png_is_written_and_shows_something(sandbox_forecast, tmp_path):
    path = chart.write(tmp_path / "forecast.png", sandbox_forecast.daily, sandbox_forecast.forecast,
                       sandbox_forecast.outlook)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 40_000, "history, bands, capacity and events make a busy picture, not an empty frame"
    with Image.open(path) as image:
        assert image.size == (1200, 700)
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    orange = (pixels[..., 0] > 200) & (pixels[..., 1] > 100) & (pixels[..., 1] < 200) & (pixels[..., 2] < 120)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert orange.sum() > 2_000, "the forecast and its bands are drawn"
    assert red.sum() > 500, "the capacity line is drawn"
    assert sandbox_forecast.chart() == chart.render(sandbox_forecast.daily, sandbox_forecast.forecast,
                                                    sandbox_forecast.outlook)
