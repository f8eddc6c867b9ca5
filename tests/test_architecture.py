"""The package's import graph: layers import downward only (no circles)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "seg4reg_tf"


def import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports}, top-level and function-level imports alike
    (a module importing its own package's `__init__` is not counted)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_circle_finder_sees_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    graph = import_graph()
    assert "seg4reg_tf.evaluation.ablation" in graph["seg4reg_tf.evaluate"]  # the graph sees imports
    assert circles(graph) == []


# The package's layers, lowest first (docs/configuration.md draws them). A module imports
# its own layer or lower ones only; the three roles do not import one another, except that
# the ablation (evaluation) runs training.
COMMANDS = {"train", "pretrain", "evaluate", "visualize", "export", "predict", "batch", "viewer", "serving_client"}
SHARED = {"geometric_readout", "vertebra_readout", "workdir", "inference"}
ROLES = ("training", "evaluation", "serving")
ALLOWED_ROLE_IMPORTS = {("evaluation", "training")}


def layer_of(module: str) -> tuple[int, str]:
    """(layer, role): 0 base, 1 shared paths, 2 a role's subpackage, 3 a command."""
    parts = module.split(".")[1:]
    if not parts:
        return 0, ""
    if parts[0] in ROLES:
        return 2, parts[0]
    if parts[0] in COMMANDS:
        return 3, ""
    return (1 if parts[0] in SHARED else 0), ""


def test_layers_import_downward_and_roles_stay_apart():
    graph = import_graph()
    assert {"seg4reg_tf.training.run", "seg4reg_tf.serving.saved_model", "seg4reg_tf.evaluation.figures"} <= set(graph)
    wrong = []
    for module, imported in graph.items():
        layer, role = layer_of(module)
        for target in imported:
            target_layer, target_role = layer_of(target)
            if target_layer > layer or (role and target_role and role != target_role and (role, target_role) not in ALLOWED_ROLE_IMPORTS):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_training_and_serving_import_no_evaluation_code():
    """Evaluation has one home (`evaluation/`); training, serving, the inference path and the
    route record reach none of it, even through other modules (a serving machine has no
    labelled data to score)."""
    graph = import_graph()
    assert "seg4reg_tf.evaluation.scoring" in reachable(graph, "seg4reg_tf.evaluate")  # the walk sees it where it is
    users = [name for name in graph if (name + ".").split(".")[1] in ("training", "serving", "inference", "routes", "workdir")
             or name in ("seg4reg_tf.export", "seg4reg_tf.predict", "seg4reg_tf.batch", "seg4reg_tf.viewer")]
    assert len(users) > 10
    wrong = {name: sorted(t for t in reachable(graph, name) if t.startswith("seg4reg_tf.evaluation")) for name in users}
    assert {name: found for name, found in wrong.items() if found} == {}
