"""The codebase's shape: layers without cycles, no path edits, short entry points and README."""
import ast
import os
import sys

from conftest import ROOT

PACKAGES = ("ferkit", "models")
# models/ sits at the top of the checkout (the design card's layout) and installs as ferkit.models.
PACKAGE_DIRS = {"ferkit": "ferkit", "ferkit.commands": os.path.join("ferkit", "commands"), "ferkit.models": "models"}
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 150


def python_files(*folders):
    for folder in folders:
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def module_files():
    """{module name as installed: its path in the checkout} for every module of the package."""
    return {(package if name == "__init__.py" else f"{package}.{name[:-3]}"): path
            for package, folder in PACKAGE_DIRS.items() for path in python_files(folder)
            for name in [os.path.basename(path)]}


def imported(path, module=None, modules=()):
    """Every module a file imports, at its top or inside functions (absolute names).  With `module`
    (the file's own name) and `modules` (the package's), `from P import NAME` is an import of P.NAME
    where that is a module, else of P itself (a name P's __init__ defines), and relative imports resolve."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    names = set()
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and module:
                parts = module.split(".")[:len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([node.module] if node.module else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            if modules:
                names.update(subs & set(modules))
                if subs - set(modules):
                    names.add(base)
            else:
                names.add(base)
                names.update(subs)  # from ferkit import backends
    return names


def module_name(path):
    name = path[:-3].replace(os.sep, ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def project_graph():
    """module -> the project modules it imports (inside functions too: a lazy import still closes a circle)."""
    files = module_files()
    return {m: {n for n in imported(p, m, files) if n in files and n != m} for m, p in files.items()}


def test_no_function_over_60_lines_and_no_class_over_150():
    """Outside tests: every function and method at most MAX_FUNCTION_LINES lines (decorators and
    docstring included), every class body at most MAX_CLASS_LINES."""
    long = []
    for path in python_files(".", "ferkit", os.path.join("ferkit", "commands"), "models", "tools", "benchmarks"):
        with open(os.path.join(ROOT, path)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            limit = {ast.FunctionDef: MAX_FUNCTION_LINES, ast.AsyncFunctionDef: MAX_FUNCTION_LINES,
                     ast.ClassDef: MAX_CLASS_LINES}.get(type(node))
            if limit and node.end_lineno - node.lineno + 1 > limit:
                long.append(f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "over the limit: " + "; ".join(long)


def test_models_import_tensorflow_and_numpy_only():
    allowed = set(sys.stdlib_module_names) | {"numpy", "tensorflow"}
    files = module_files()
    for path in python_files("models"):
        module = next(m for m, p in files.items() if p == path)
        foreign = {n for n in imported(path, module, files) if n.split(".")[0] not in allowed
                   and not n.startswith("ferkit.models")}
        assert not foreign, f"{path} imports {sorted(foreign)}"


def test_the_data_set_facts_import_nothing_and_exist_once():
    assert imported(os.path.join("ferkit", "dataset.py")) == set()
    for path in python_files(".", "ferkit", "models", "tools", "benchmarks"):
        text = open(os.path.join(ROOT, path)).read()
        if path != os.path.join("ferkit", "dataset.py"):
            assert '"angry", "disgust"' not in text and "0.25 * 255" not in text, path


def test_no_import_cycles():
    graph = project_graph()  # a package's __init__ included: the API's lazy imports count
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
    assert {"ferkit", "ferkit.backends", "ferkit.training", "ferkit.commands.train", "ferkit.models.layers"} <= set(graph)


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
