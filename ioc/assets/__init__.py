"""Files shipped inside the package so a fresh clone works without `../shared`.

The default detector and the sample frames are CC BY 4.0; see `models/MODEL_CARD.md` and
`ATTRIBUTION.md` beside this file.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_PATH = ASSETS_DIR / "models" / "ioc-yolo11n.pt"
SAMPLES_DIR = ASSETS_DIR / "samples"
SAMPLE_TICKETS_PATH = SAMPLES_DIR / "tickets_1022.jsonl"
SENSOR_REGISTRY_PATH = ASSETS_DIR / "sensors.toml"
CAMERA_REGISTRY_PATH = ASSETS_DIR / "cameras.toml"
DEMO_SENSOR_RULES_PATH = ASSETS_DIR / "demo_sensor_rules.toml"
