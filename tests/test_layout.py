"""The codebase's shape: layers without cycles, no path edits, short entry points and README."""
import ast
import os
import sys

from conftest import ROOT

PACKAGES = ("ferkit", "models")


def python_files(*folders):
    for folder in folders:
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def imported(path):
    """Every module a file imports, at its top or inside functions (absolute names)."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # from ferkit import backends
    return names


def module_name(path):
    name = path[:-3].replace(os.sep, ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def project_graph():
    """module -> the project modules it imports."""
    files = [p for pkg in PACKAGES for p in python_files(pkg)]
    modules = {module_name(p) for p in files}
    return {module_name(p): {n for n in imported(p) if n in modules and n != module_name(p)} for p in files}


def test_models_import_tensorflow_and_numpy_only():
    allowed = set(sys.stdlib_module_names) | {"numpy", "tensorflow", "models"}
    for path in python_files("models"):
        foreign = {n for n in imported(path) if n.split(".")[0] not in allowed}
        assert not foreign, f"{path} imports {sorted(foreign)}"


def test_the_data_set_facts_import_nothing_and_exist_once():
    assert imported(os.path.join("ferkit", "dataset.py")) == set()
    for path in python_files(".", "ferkit", "models", "tools", "benchmarks"):
        text = open(os.path.join(ROOT, path)).read()
        if path != os.path.join("ferkit", "dataset.py"):
            assert '"angry", "disgust"' not in text and "0.25 * 255" not in text, path


def test_no_import_cycles():
    graph = project_graph()
    # A package's __init__ importing its own submodules lazily is not a cycle of layers.
    graph = {m: {n for n in deps if not (m in PACKAGES and n.startswith(m + "."))} for m, deps in graph.items()}
    done, stack = set(), []

    def visit(module):
        if module in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(module):] + [module]))
        if module in done:
            return
        stack.append(module)
        for dep in sorted(graph.get(module, ())):
            visit(dep)
        stack.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert "ferkit.backends" in graph and "ferkit.checkpoints" in graph  # the walk saw the package


def test_no_sys_path_edits_outside_conftest():
    folders = [".", "ferkit", "models", "tools", "benchmarks", "tests"]
    offenders = [p for p in python_files(*folders) if p != os.path.join("tests", "conftest.py")
                 and "sys.path.insert" in open(os.path.join(ROOT, p)).read()
                 and p != os.path.join("tests", "test_layout.py")]
    assert not offenders, offenders


def test_no_script_imports_another_script_or_a_benchmark():
    scripts = {module_name(os.path.basename(p)) for p in python_files(".")} | {"bench_roundtrip", "bench_export"}
    for path in python_files("tools", "benchmarks", "ferkit", "models"):
        assert not (imported(path) & scripts), f"{path} imports {sorted(imported(path) & scripts)}"
