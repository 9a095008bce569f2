"""The command line as a sans-IO program (uniapi_core.shell), driven by hand: the effects it
asks for, in order, and what it does with their results. tests/e2e/test_cli.py runs the
same commands as processes."""

from __future__ import annotations

from uniapi_core.cmdline import build_parser, module_parser
from uniapi_core.shell import Exit, FetchConfig, Print, ReadFile, Serve, program

CONFIG = """
providers:
  - {provider: oa, base_url: "https://api.openai.com/v1/chat/completions", api: k, model: [m]}
api_keys:
  - api: sk-user
"""


def run(argv: list[str], results: dict[type, object], env: dict[str, str] | None = None,
        module: str | None = None) -> list[object]:
    """Every effect the program yields, each answered from ``results`` by its type."""
    parser = module_parser(module) if module else build_parser()
    gen = program(parser.parse_args(argv), env or {})
    effects: list[object] = []
    result = None
    while True:
        try:
            effect = gen.send(result)
        except StopIteration:
            return effects
        effects.append(effect)
        assert len(effects) < 20
        result = results.get(type(effect))
        if isinstance(effect, Exit):
            return effects


def test_check_reads_the_flag_file_and_prints_the_summary():
    effects = run(["check", "my.yaml"], {ReadFile: CONFIG})
    assert effects[0] == ReadFile("my.yaml")
    assert isinstance(effects[-1], Print) and effects[-1].stdout
    assert "oa" in effects[-1].text


def test_a_missing_file_exits_with_its_reason():
    effects = run(["check", "nope.yaml"], {ReadFile: FileNotFoundError(2, "No such file")})
    assert effects[0] == ReadFile("nope.yaml")
    assert isinstance(effects[-1], Exit) and "nope.yaml" in str(effects[-1].code)


def test_config_errors_are_printed_then_status_2():
    effects = run(["check", "bad.yaml"], {ReadFile: "providers: 7\n"})
    printed, last = effects[1], effects[-1]
    assert isinstance(printed, Print) and not printed.stdout and "error" in printed.text
    assert last == Exit(2)


def test_config_url_is_fetched_once_when_no_flag_names_a_file():
    env = {"CONFIG_URL": "https://conf.test/api.yaml"}
    effects = run(["serve", "--port", "0"], {FetchConfig: (200, CONFIG.encode())}, env=env)
    assert isinstance(effects[0], FetchConfig)
    assert effects[0].request.url == "https://conf.test/api.yaml"
    assert isinstance(effects[-1], Serve) and len(effects) == 2
    failed = run(["serve", "--port", "0"], {FetchConfig: (404, b"")}, env=env)
    assert isinstance(failed[-1], Exit) and "404" in str(failed[-1].code)
    unreachable = run(["serve", "--port", "0"], {FetchConfig: "connection refused"}, env=env)
    assert isinstance(unreachable[-1], Exit) and "refused" in str(unreachable[-1].code)


def test_serve_refuses_a_bad_flag_before_reading_the_config():
    effects = run(["--port", "1", "--max-connections", "0"], {ReadFile: CONFIG}, module="trio")
    assert len(effects) == 1 and isinstance(effects[0], Exit)


def test_serve_reads_loads_then_serves():
    effects = run(["serve", "--config", "c.yaml", "--port", "0"], {ReadFile: CONFIG})
    assert effects[0] == ReadFile("c.yaml")
    serve = effects[-1]
    assert isinstance(serve, Serve) and serve.launch.port == 0 and not serve.launch.demo
    assert serve.config(None).config.providers[0].provider == "oa"


def test_demo_serves_without_reading_anything():
    (serve,) = run(["demo", "--port", "0"], {})
    assert isinstance(serve, Serve) and serve.launch.demo
    loaded = serve.config("http://127.0.0.1:9")
    assert "127.0.0.1:9" in loaded.config.providers[0].base_url


def test_a_bad_timeout_in_the_environment_ends_the_process():
    effects = run(["serve", "--config", "c.yaml"], {ReadFile: CONFIG}, env={"TIMEOUT": "soon"})
    assert isinstance(effects[-1], Exit) and "TIMEOUT" in str(effects[-1].code)
