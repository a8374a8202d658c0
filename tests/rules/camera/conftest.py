from __future__ import annotations

import pytest

from ioc.rules.camera.registry import CameraRules, CameraRuleSet
from tests.rules.camera.scene import CAMERA


@pytest.fixture(scope="module")
def rules() -> CameraRules:
    return CameraRuleSet.load().for_camera(CAMERA.id)
