"""The API's interactive docs work offline: Swagger UI's and ReDoc's assets come from the package."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from orchestrion.app import create_app
from orchestrion.config import load_settings
from orchestrion.store import Store


def test_docs_pages_load_their_assets_from_the_server(tmp_path: Path) -> None:
    with Store.open(":memory:") as store, TestClient(create_app(store, load_settings({}, home=tmp_path))) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200
            assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", html.text)
            assert assets, html.text
            for asset in assets:
                assert asset.startswith("/"), f"{page} loads {asset} from another host"
                assert client.get(asset).status_code == 200, asset
