"""The package's shape: pure (nothing of kurastore imported), and __all__ is honest."""

import ast
import subprocess
import sys
from pathlib import Path

import kurastore.erasure as erasure

PACKAGE_DIR = Path(erasure.__file__).parent
ALLOWED_TOP_LEVEL = {"zfec", "xxhash"} | set(sys.stdlib_module_names)


def test_importing_the_package_loads_nothing_else_of_kurastore():
    code = (
        "import sys, kurastore.erasure\n"
        "print(sorted(m for m in sys.modules if m.startswith('kurastore')"
        " and m != 'kurastore' and not m.startswith('kurastore.erasure')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_modules_import_only_the_stdlib_zfec_xxhash_and_themselves():
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: use kurastore.erasure paths"
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = top in ALLOWED_TOP_LEVEL or name.startswith("kurastore.erasure")
                assert ok, f"{path.name} imports {name}"


def test_every_exported_name_exists_and_public_modules_are_private():
    for name in erasure.__all__:
        assert hasattr(erasure, name), name
    public = {n for n in dir(erasure) if not n.startswith("_")}
    assert public - set(erasure.__all__) <= {"annotations"}
    assert all(p.name.startswith("_") for p in PACKAGE_DIR.glob("*.py"))
