"""Every template name and endpoint the code refers to exists, so a typo fails here, not in a
browser: includes, extends and imports name templates that exist (and never `ignore missing`),
and every url_for, in templates and in Python, names an endpoint of the app's url_map."""

from __future__ import annotations

import ast
from pathlib import Path

from jinja2 import ChoiceLoader, DictLoader, Environment, nodes
from jinja2.meta import find_referenced_templates

import inbox

PACKAGE = Path(inbox.__file__).parent
# Called in templates but defined by Jinja itself or per template (macros, caller).
JINJA_BUILTINS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "caller"}


def template_problems(env: Environment, endpoints: set[str]) -> list[str]:
    """What is wrong in every template env can load: missing templates, endpoints, functions."""
    known = set(env.list_templates())
    problems = []
    for name in sorted(known):
        source = env.loader.get_source(env, name)[0]
        tree = env.parse(source)  # a syntax error or an unknown filter fails here too
        env.get_template(name)
        for referenced in find_referenced_templates(tree):
            if referenced is None:
                problems.append(f"{name}: includes a template named by a variable")
            elif referenced not in known:
                problems.append(f"{name}: includes or extends {referenced!r}, which does not exist")
        for include in tree.find_all(nodes.Include):
            if include.ignore_missing:
                problems.append(f"{name}: `ignore missing` hides a missing template")
        macros = {m.name for m in tree.find_all(nodes.Macro)}
        assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
        for call in tree.find_all(nodes.Call):
            if not isinstance(call.node, nodes.Name):
                continue
            function = call.node.name
            if function == "url_for":
                endpoint = call.args[0] if call.args else None
                if not isinstance(endpoint, nodes.Const):
                    problems.append(f"{name}: url_for with an endpoint named by a variable")
                elif endpoint.value not in endpoints:
                    problems.append(f"{name}: url_for({endpoint.value!r}) names no endpoint")
            elif function not in env.globals and function not in macros | assigned | JINJA_BUILTINS:
                problems.append(f"{name}: calls {function}(), which is no template global")
    return problems


def python_url_for_problems(endpoints: set[str]) -> list[str]:
    """url_for("…") in the package's Python code naming no endpoint ('.x' is the file's blueprint)."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        blueprints = [node.args[0].value for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Blueprint"
                      and node.args and isinstance(node.args[0], ast.Constant)]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "url_for" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                continue
            endpoint = node.args[0].value
            if endpoint.startswith("."):
                if len(blueprints) != 1:
                    problems.append(f"{path.name}:{node.lineno}: relative endpoint {endpoint!r} outside one blueprint")
                    continue
                endpoint = blueprints[0] + endpoint
            if endpoint not in endpoints:
                problems.append(f"{path.name}:{node.lineno}: url_for({endpoint!r}) names no endpoint")
    return problems


def _endpoints(app) -> set[str]:
    return {rule.endpoint for rule in app.url_map.iter_rules()}


def test_every_template_refers_to_templates_endpoints_and_globals_that_exist(app):
    assert template_problems(app.jinja_env, _endpoints(app)) == []


def test_every_url_for_in_the_code_names_an_endpoint(app):
    assert python_url_for_problems(_endpoints(app)) == []


def test_the_check_finds_a_missing_template_endpoint_and_global(app):
    broken = DictLoader({"partials/_broken.html": (
        '{% include "partials/_nowhere.html" %}{% include "partials/_message.html" ignore missing %}'
        '<a href="{{ url_for(\'conversations.nowhere\') }}">{{ job_label(run) }}</a>')})
    env = app.jinja_env.overlay(loader=ChoiceLoader([broken, app.jinja_env.loader]))
    problems = template_problems(env, _endpoints(app))
    assert problems == [
        "partials/_broken.html: includes or extends 'partials/_nowhere.html', which does not exist",
        "partials/_broken.html: `ignore missing` hides a missing template",
        "partials/_broken.html: url_for('conversations.nowhere') names no endpoint",
        "partials/_broken.html: calls job_label(), which is no template global",
    ]
