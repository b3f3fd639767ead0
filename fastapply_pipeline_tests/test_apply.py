"""The deterministic applier: merges in every language and style, refuses with a reason instead of guessing."""

from pathlib import Path

import pytest

from fastapply_pipeline.cli import EXIT_REFUSED
from fastapply_pipeline.core.apply import Refusal, apply_snippet
from fastapply_pipeline.core.cases import load_cases, parse_case
from fastapply_pipeline.core.markers import is_marker_line, marker_for
from fastapply_pipeline_tests.helpers import invoke

PY = """import os


def load(path):
    with open(path) as f:
        return f.read()


def save(path, text):
    with open(path, "w") as f:
        f.write(text)


def main():
    text = load("a.txt")
    save("b.txt", text.upper())
"""


def test_python_modification_between_markers():
    snippet = """# ... existing code ...
def save(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
# ... existing code ...
"""
    result = apply_snippet(PY, snippet)
    assert result.ok, result.detail
    assert result.merged == PY.replace('open(path, "w")', 'open(path, "w", encoding="utf-8")')


def test_addition_and_deletion_in_one_snippet():
    snippet = """import os
import sys
# ... existing code ...
def main():
    save("b.txt", load("a.txt").upper())
"""
    expected = PY.replace("import os\n", "import os\nimport sys\n").replace(
        '    text = load("a.txt")\n    save("b.txt", text.upper())\n',
        '    save("b.txt", load("a.txt").upper())\n',
    )
    assert apply_snippet(PY, snippet).merged == expected


def test_deletion_shown_by_context_only():
    snippet = """# ... existing code ...
def main():
    save("b.txt", text.upper())
"""
    assert apply_snippet(PY, snippet).merged == PY.replace('    text = load("a.txt")\n', "")


TS = """import { clamp } from './math';

export function scale(value: number, factor = 2): number {
  return clamp(value * factor, 0, 100);
}

export function shift(value: number, by = 1): number {
  return clamp(value + by, 0, 100);
}
"""


def test_typescript_edit():
    snippet = """// ... existing code ...
export function shift(value: number, by = 1): number {
  const next = value + by;
  return clamp(next, 0, 100);
}
"""
    expected = TS.replace(
        "  return clamp(value + by, 0, 100);\n", "  const next = value + by;\n  return clamp(next, 0, 100);\n"
    )
    assert apply_snippet(TS, snippet).merged == expected


TSX = """export function List({ items }: Props) {
  return (
    <ul className="list">
      <li className="header">Items</li>
      {items.map((item) => (
        <li key={item.id}>{item.name}</li>
      ))}
      <li className="footer">End</li>
    </ul>
  );
}
"""


@pytest.mark.parametrize(
    "marker", ["{/* ... existing code ... */}", "{/* ... */}", "// ... existing code ..."]
)
def test_tsx_and_jsx_edits_with_jsx_markers(marker):
    snippet = f"""// ... existing code ...
    <ul className="list">
      <li className="header">All items</li>
      {{items.map((item) => (
      {marker}
      <li className="footer">End</li>
    </ul>
// ... existing code ...
"""
    assert apply_snippet(TSX, snippet).merged == TSX.replace(">Items<", ">All items<")


JS = """const DEFAULTS = { retries: 3 };

function withDefaults(options) {
  return { ...DEFAULTS, ...options };
}

module.exports = { withDefaults };
"""


def test_javascript_append_at_end():
    snippet = """// ... existing code ...
module.exports = { withDefaults };
module.exports.DEFAULTS = DEFAULTS;
"""
    assert apply_snippet(JS, snippet).merged == JS + "module.exports.DEFAULTS = DEFAULTS;\n"


def test_crlf_original_and_crlf_snippet():
    original = PY.replace("\n", "\r\n")
    snippet = '# ... existing code ...\r\ndef main():\r\n    text = load("in.txt")\r\n    save("b.txt", text.upper())\r\n'
    result = apply_snippet(original, snippet)
    assert result.merged == original.replace('load("a.txt")', 'load("in.txt")')
    assert "\n" not in result.merged.replace("\r\n", "")


def test_tab_indented_file_with_a_space_indented_snippet():
    original = "def f(x):\n\tif x:\n\t\treturn 1\n\treturn 0\n"
    snippet = "def f(x):\n    if x:\n        print(x)\n        return 1\n# ... existing code ...\n"
    assert (
        apply_snippet(original, snippet).merged
        == "def f(x):\n\tif x:\n\t\tprint(x)\n\t\treturn 1\n\treturn 0\n"
    )


def test_trailing_whitespace_in_the_snippet_still_anchors():
    snippet = '# ... existing code ...   \ndef save(path, text):   \n    with open(path, "a") as f:\n        f.write(text)  \n# ... existing code ...\n'
    assert apply_snippet(PY, snippet).merged == PY.replace('open(path, "w")', 'open(path, "a")')


@pytest.mark.parametrize(
    "marker",
    [
        "# ... existing code ...",
        "# ... rest of code ...",
        "# ...",
        "    # ...",
        "\t# … existing code …",
        "# rest of the code remains the same",
        "# ... unchanged: load the file and upper-case it ...",  # a colon in the words
        "# rest of load() and save() unchanged",  # names with parentheses
        "# (other functions unchanged)",
        "# keep the rest as is",
        "# everything else stays the same",
    ],
)
def test_every_python_marker_spelling(marker):
    snippet = f"{marker}\ndef main():\n    text = load('x')\n    save(\"b.txt\", text.upper())\n"
    assert apply_snippet(PY, snippet).merged == PY.replace('load("a.txt")', "load('x')")


@pytest.mark.parametrize(
    "marker", ["// ... existing code ...", "// ... rest of code ...", "/* ... */", "// ...", "  // ..."]
)
def test_every_js_marker_spelling(marker):
    snippet = f"{marker}\nfunction withDefaults(options) {{\n  return {{ ...options, ...DEFAULTS }};\n}}\n{marker}\nmodule.exports = {{ withDefaults }};\n"
    assert apply_snippet(JS, snippet).merged == JS.replace(
        "{ ...DEFAULTS, ...options }", "{ ...options, ...DEFAULTS }"
    )


SIMILAR = """def area_square(side):
    result = side * side
    return result


def area_rect(width, height):
    result = width * height
    return result
"""


def test_new_lines_after_the_last_anchor_are_inserted_unless_they_rewrite_the_unit_tail():
    """New lines after the last anchor are inserted there; they replace the rest of the unit only when the
    snippet shows the unit's header, no marker stands inside it, and they are at least as many as the lines
    left (or the snippet and the file end there)."""
    inserted = PY.replace("def main():\n", "def main():\n    print('start')\n")
    inside = "# ... existing code ...\ndef main():\n    print('start')\n    # ... existing code ...\n"
    assert apply_snippet(PY, inside).merged == inserted
    column_0 = "# ... existing code ...\ndef main():\n    print('start')\n# ... existing code ...\n"
    assert apply_snippet(PY, column_0).merged == inserted
    rewrite = (
        "# ... existing code ...\ndef save(path, text):\n    path.write_text(text)\n# ... existing code ...\n"
    )
    assert apply_snippet(PY, rewrite).merged == PY.replace(
        '    with open(path, "w") as f:\n        f.write(text)\n', "    path.write_text(text)\n"
    )
    at_end = "# ... existing code ...\ndef main():\n    print('start')\n"
    assert (
        apply_snippet(PY, at_end).merged == PY[: PY.index("def main")] + "def main():\n    print('start')\n"
    )


def test_ambiguous_anchor_in_similar_functions_is_refused():
    snippet = "# ... existing code ...\n    result = side * side\n    return round(result, 2)\n# ... existing code ...\n"
    assert apply_snippet(SIMILAR, snippet).ok  # a unique line anchors fine
    ambiguous = "# ... existing code ...\n    return result\n    print(result)\n# ... existing code ...\n"
    result = apply_snippet(SIMILAR, ambiguous)
    assert result.reason == Refusal.AMBIGUOUS_ANCHOR and "lines 3, 8" in result.detail


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ("# ... existing code ...\n    print('nowhere')\n# ... existing code ...\n", Refusal.NO_ANCHOR),
        ("# ... existing code ...\n", Refusal.EMPTY_SNIPPET),
        ("", Refusal.EMPTY_SNIPPET),
        ("x = 1\n", Refusal.NO_ANCHOR),
    ],
)
def test_refusals_name_their_reason(snippet, reason):
    result = apply_snippet(PY, snippet)
    assert not result.ok and result.reason == reason and result.merged is None and result.detail


def test_a_snippet_that_would_drop_most_of_the_file_is_refused():
    original = "".join(f"line_{i} = {i}\n" for i in range(60))
    snippet = "line_0 = 0\nline_2 = 2\n# ... existing code ...\n"  # deletes line_1: fine
    assert apply_snippet(original, snippet).merged == original.replace("line_1 = 1\n", "")
    drop = "line_0 = 0\nline_50 = 50\n# ... existing code ...\n"
    result = apply_snippet(original, drop)
    assert result.reason == Refusal.DROPS_MOST_OF_FILE


def test_canonical_markers():
    assert marker_for("python") == "# ... existing code ..."
    assert marker_for("typescript", indent="  ") == "  // ... existing code ..."
    assert marker_for("tsx", jsx_child=True) == "{/* ... existing code ... */}"
    assert marker_for("javascript", jsx_child=True) == "// ... existing code ..."
    for line in ["x = ...", "# see the rest", "print('...')", "// TODO: more work", "const a = b; // ..."]:
        assert not is_marker_line(line), line
    # comments, not markers (a second reader's probes of the wider spellings): no word says the code is kept
    for line in [
        "// other handlers",
        "# everything else",
        "# other option",
        "# (see above)",
        "# rest of the line is the value",
        "# Rest of the setup happens in create_app()",
        "# other keys are left as is",
        "// ...props: everything the caller passes on to the input",
        "// other fields pass through unchanged",
    ]:
        assert not is_marker_line(line), line


def test_cli_exit_codes(tmp_path):
    original = tmp_path / "a.py"
    original.write_text(PY)
    good = tmp_path / "good.py"
    good.write_text(
        "# ... existing code ...\ndef main():\n    text = load('x')\n    save(\"b.txt\", text.upper())\n"
    )
    out = tmp_path / "out.py"
    merged = invoke("apply", original, good, "-o", out)
    assert merged.exit_code == 0 and out.read_text() == PY.replace('load("a.txt")', "load('x')")
    printed = invoke("apply", original, good)
    assert printed.exit_code == 0 and printed.output == out.read_text()
    bad = tmp_path / "bad.py"
    bad.write_text("# ... existing code ...\n    return result_of_nothing\n# ... existing code ...\n")
    refused = invoke("apply", original, bad)
    assert refused.exit_code == EXIT_REFUSED and "refused: no_anchor" in refused.output
    missing = invoke("apply", tmp_path / "nope.py", good)
    assert missing.exit_code == 2


WEBHOOK = """import os

HANDLED = {"push", "release"}


def verify(body):
    return bool(body)


def handle(body):
    return verify(body)
"""


def test_new_code_inserted_into_a_blank_run_keeps_the_files_spacing_before_what_follows():
    """The head ends in one of two blank lines: the new line is followed by the run's full length (two
    blank lines before a Python function), not by what is left of it."""
    snippet = """import os
import logging
# ... existing code ...
HANDLED = {"push", "release"}

logger = logging.getLogger(__name__)

# ... existing code ...
"""
    result = apply_snippet(WEBHOOK, snippet, language="python")
    assert result.merged == WEBHOOK.replace("import os\n", "import os\nimport logging\n").replace(
        'HANDLED = {"push", "release"}\n',
        'HANDLED = {"push", "release"}\n\nlogger = logging.getLogger(__name__)\n',
    )


def test_a_rewritten_line_after_a_heading_keeps_its_list_tight():
    """A changed list item right under a section's heading replaces the old item: no blank line is
    inserted between it and the next item."""
    readme = "# Tool\n\n## Setup\n\n1. Install Python 3.10.\n2. Run `make`.\n\n## Usage\n\nRun it.\n"
    snippet = "## Setup\n\n1. Install Python 3.11 or newer.\n<!-- ... -->\n"
    result = apply_snippet(readme, snippet, language="markdown")
    assert result.merged == readme.replace("Python 3.10.", "Python 3.11 or newer.")


def test_an_anonymous_handler_among_new_lines_is_not_a_moved_unit():
    """A new route's `async (req, res) => {` names nothing: the existing route's handler with the same
    first line stays where it is."""
    original = """router.post(
  "/",
  validate,
  async (req, res) => {
    res.json(await create(req.body));
  }
);

router.delete("/:id", async (req, res) => {
  res.json(await remove(req.params.id));
});
"""
    snippet = """// ... existing code ...
);

router.patch(
  "/:id",
  async (req, res) => {
    res.json(await update(req.params.id, req.body));
  }
);

router.delete("/:id", async (req, res) => {
// ... existing code ...
"""
    added = 'router.patch(\n  "/:id",\n  async (req, res) => {\n    res.json(await update(req.params.id, req.body));\n  }\n);\n\n'
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace('router.delete("/:id"', added + 'router.delete("/:id"')


GO_SERVER = """package server

type Server struct {
\tcfg    Config
\tlogger *slog.Logger
}

func NewServer(cfg Config) *Server {
\ts := &Server{
\t\tcfg:    cfg,
\t\tlogger: slog.Default(),
\t}
\ts.routes()
\ts.http = &http.Server{
\t\tAddr: cfg.Addr,
\t}
\treturn s
}
"""


def test_a_new_blocks_closer_above_the_first_unchanged_line_is_not_the_head():
    """The snippet opens with a changed signature and a new `if` block: its `}` matches two closers of
    the original, and would make the placement ambiguous; the head is the first unchanged statement."""
    snippet = """func NewServer(cfg Config, logger *slog.Logger) *Server {
\tif logger == nil {
\t\tlogger = slog.Default()
\t}
\ts := &Server{
\t\tcfg:    cfg,
\t\tlogger: logger,
\t}
\t// ... existing code ...
}
"""
    result = apply_snippet(GO_SERVER, snippet, language="go")
    assert result.ok, result.detail
    assert result.merged == GO_SERVER.replace(
        "func NewServer(cfg Config) *Server {\n",
        "func NewServer(cfg Config, logger *slog.Logger) *Server {\n\tif logger == nil {\n"
        "\t\tlogger = slog.Default()\n\t}\n",
    ).replace("\t\tlogger: slog.Default(),", "\t\tlogger: logger,")


def test_a_first_line_that_copies_a_later_units_line_is_new_when_the_header_comes_first():
    """The changed derive line equals the derive of the struct below; the struct the snippet names
    comes first in the file, so the derive line edits that struct's attribute (not an insertion next to
    the other struct, which would duplicate its header)."""
    original = """#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServerConfig {
    pub host: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DatabaseConfig {
    pub url: String,
}
"""
    snippet = """#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct ServerConfig {
    // ... existing fields ...
}
"""
    result = apply_snippet(original, snippet, language="rust")
    assert result.ok, result.detail
    assert result.merged == original.replace(
        '#[derive(Debug, Deserialize)]\n#[serde(rename_all = "kebab-case")]',
        '#[derive(Debug, Serialize, Deserialize)]\n#[serde(rename_all = "kebab-case", default)]',
    )


TO_MILLIS = """export function toMillis(value: number): number;
export function toMillis(text: string): number;
export function toMillis(input: number | string): number {
  if (typeof input === "number") {
    return input;
  }
  return Number(input);
}
"""


def test_a_segment_ending_in_a_new_block_is_anchored_by_the_run_before_that_block():
    """The snippet's last line that occurs in the file is the `}` of a new `if` block: the tail is the
    unchanged `if` block before it, and the new block goes after that (not a copy of the whole segment
    inserted after its first line)."""
    snippet = """// ... existing code ...
export function toMillis(value: number): number;
export function toMillis(parts: { value: number }): number;
export function toMillis(text: string): number;
export function toMillis(input: number | string | { value: number }): number {
  if (typeof input === "number") {
    return input;
  }
  if (typeof input === "object") {
    return input.value;
  }
  // ... existing code ...
}
"""
    result = apply_snippet(TO_MILLIS, snippet, language="typescript")
    assert result.merged == TO_MILLIS.replace(
        "export function toMillis(text",
        "export function toMillis(parts: { value: number }): number;\nexport function toMillis(text",
    ).replace("(input: number | string)", "(input: number | string | { value: number })").replace(
        "    return input;\n  }\n",
        '    return input;\n  }\n  if (typeof input === "object") {\n    return input.value;\n  }\n',
    )


def test_a_changed_import_edits_the_import_it_nearly_copies_not_its_type_only_sibling():
    original = (
        'import { useEffect, useState } from "react";\nimport type { ReactNode } from "react";\n\n'
        "export const a = 1;\n\nexport function f() {\n  return a;\n}\n"
    )
    snippet = (
        'import { useEffect, useMemo, useState } from "react";\n// ... existing code ...\n'
        "export function f() {\n  return a + 1;\n}\n"
    )
    result = apply_snippet(original, snippet, language="typescript")
    assert result.merged == original.replace("useEffect, useState", "useEffect, useMemo, useState").replace(
        "return a;", "return a + 1;"
    )


def test_a_case_rewritten_into_a_braced_block_does_not_send_the_segment_to_a_look_alike_switch():
    """`case Kind.B:` becomes `case Kind.B: {`: that header is mentioned, so the placement between the
    matching neighbours of the first switch stands (the second switch matches only one line)."""
    original = """export function area(k: Kind, a: number): number {
  switch (k) {
    case Kind.A:
      return a * a;
    case Kind.B:
      return a / 2;
    case Kind.C:
      return a;
  }
}

export function perimeter(k: Kind, a: number): number {
  switch (k) {
    case Kind.A:
      return 4 * a;
    case Kind.B:
      return 3 * a;
    case Kind.C:
      return a;
  }
}
"""
    snippet = """// ... existing code ...
    case Kind.A:
      return a * a;
    case Kind.B: {
      const h = a / 2;
      return h;
    }
    case Kind.C:
      return a;
// ... existing code ...
"""
    result = apply_snippet(original, snippet, language="typescript")
    assert result.merged == original.replace(
        "    case Kind.B:\n      return a / 2;\n",
        "    case Kind.B: {\n      const h = a / 2;\n      return h;\n    }\n",
    )


def test_a_new_exit_right_after_its_anchor_rewrites_the_exit_that_ends_the_block():
    """`return X` directly after `if n > max {`, then a marker: the block's old `return` is replaced (a
    second exit after it would be dead code); a new statement that is no exit is still inserted."""
    original = "func run(n int) error {\n\tn++\n\tif n > max {\n\t\treturn ErrTooMany\n\t}\n\treturn nil\n}\n"
    snippet = 'func run(n int) error {\n\t// ...\n\tif n > max {\n\t\treturn fmt.Errorf("%w: %d", ErrTooMany, n)\n\t// ...\n'
    result = apply_snippet(original, snippet, language="go")
    assert result.merged == original.replace(
        "return ErrTooMany", 'return fmt.Errorf("%w: %d", ErrTooMany, n)'
    )
    logged = snippet.replace('return fmt.Errorf("%w: %d", ErrTooMany, n)', "log.Print(n)")
    assert apply_snippet(original, logged, language="go").merged == original.replace(
        "\t\treturn ErrTooMany", "\t\tlog.Print(n)\n\t\treturn ErrTooMany"
    )


ALERT = """export function Alert({ title, onDismiss }: AlertProps) {
  return (
    <div role="alert" className={clsx("alert")}>
      <strong>{title}</strong>
      <button onClick={onDismiss}>x</button>
    </div>
  );
}

export function AlertList({ items }: { items: AlertProps[] }) {
  return (
    <div className="alert-list">
      {items.map((item) => (
        <Alert key={item.title} {...item} />
      ))}
    </div>
  );
}
"""


def test_a_rewritten_opener_whose_body_is_elided_is_closed_by_its_own_closing_lines():
    """The snippet rewrites the component's signature and its `<div>` (the children elided by a JSX
    marker), then closes with `</div>`, `);`, `}`: the opener replaces the old `<div>`, and the closing
    lines land on that component's own (not the look-alike closers of the next component)."""
    snippet = """// ... existing code ...
export function Alert({ title, variant = "info", onDismiss }: AlertProps) {
  return (
    <div role="alert" className={clsx("alert", `alert-${variant}`)}>
      {/* ... existing code ... */}
    </div>
  );
}
// ... existing code ...
"""
    result = apply_snippet(ALERT, snippet, language="tsx")
    assert result.merged == ALERT.replace(
        "{ title, onDismiss }", '{ title, variant = "info", onDismiss }'
    ).replace('className={clsx("alert")}', 'className={clsx("alert", `alert-${variant}`)}')


def test_a_block_rewritten_under_a_changed_condition_replaces_the_old_block():
    original = "function f(x) {\n  if (a) {\n    one();\n  }\n  if (b) {\n    two();\n  }\n  return x;\n}\n"
    snippet = (
        "// ... existing code ...\n  if (a) {\n    one();\n  }\n  if (b && c) {\n    two();\n    three();\n  }\n"
        "// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace(
        "  if (b) {\n    two();\n  }", "  if (b && c) {\n    two();\n    three();\n  }"
    )


# Found by a second reader of the rules above: each merged a wrong file in a first version of them.
def test_code_appended_to_a_function_that_copies_an_earlier_line_stays_in_that_function():
    original = (
        "def load(path):\n    with open(path) as f:\n        data = f.read()\n    return data\n\n\n"
        'def save(path, data):\n    with open(path, "w") as f:\n        f.write(data)\n'
    )
    snippet = (
        '# ... existing code ...\ndef save(path, data):\n    with open(path, "w") as f:\n        f.write(data)\n'
        "    return data\n"
    )
    assert apply_snippet(original, snippet, language="python").merged == original + "    return data\n"


def test_methods_named_new_or_delete_are_units():
    original = (
        "pub struct Pool {\n    size: usize,\n}\n\nimpl Pool {\n    pub fn new(size: usize) -> Self {\n"
        "        Pool { size }\n    }\n\n    pub fn size(&self) -> usize {\n        self.size\n    }\n}\n"
    )
    snippet = (
        "impl Pool {\n    pub fn new(size: usize, name: String) -> Self {\n        Pool { size, name }\n    }\n"
        "    // ... existing code ...\n"
    )
    assert apply_snippet(original, snippet, language="rust").merged == original.replace(
        "    pub fn new(size: usize) -> Self {\n        Pool { size }",
        "    pub fn new(size: usize, name: String) -> Self {\n        Pool { size, name }",
    )


def test_a_changed_assignment_that_fits_two_classes_is_refused_not_matched_by_spelling():
    original = (
        'class Config:\n    SECRET = "x"\n\n\nclass Dev(Config):\n    DEBUG = True\n    LOG_LEVEL = "debug"\n\n\n'
        'class Prod(Config):\n    DEBUG = False\n    LOG_LEVEL = "warning"\n'
    )
    snippet = '# ... existing code ...\n    LOG_LEVEL = "info"\n# ... existing code ...\n'
    assert not apply_snippet(original, snippet, language="python").ok


FETCH_JSON = """async function fetchJson(url) {
  const res = await fetch(url);
  if (res.status === 404) {
    logger.warn(`fetch ${url} failed`);
    return null;
  }
  if (res.status >= 500) {
    logger.warn(`fetch ${url} failed`);
    throw new ServerError(res.status);
  }
  return res.json();
}
"""


def test_a_new_sibling_block_that_shares_a_line_with_the_next_one_does_not_replace_it():
    """Found by a second reader: `if (res.status === 401) {..}` shares its log line with the `>= 500`
    block after it; a rewritten block must keep its header's words and every old body line."""
    snippet = FETCH_JSON.replace(
        "  if (res.status >= 500) {\n    logger.warn(`fetch ${url} failed`);\n    throw new ServerError(res.status);\n"
        "  }\n  return res.json();\n",
        "  if (res.status === 401) {\n    logger.warn(`fetch ${url} failed`);\n    throw new AuthError(url);\n  }\n"
        "  // ... existing code ...\n",
    )
    result = apply_snippet(FETCH_JSON, snippet, language="javascript")
    if result.ok:  # a refusal is fair; a merge must insert the block and keep the other
        assert result.merged == FETCH_JSON.replace(
            "  if (res.status >= 500)",
            "  if (res.status === 401) {\n    logger.warn(`fetch ${url} failed`);\n    throw new AuthError(url);\n  }\n"
            "  if (res.status >= 500)",
        )


def test_a_first_line_that_only_occurs_after_the_segments_last_line_is_refused():
    """`flush();` (new in start(), a copy of stop()'s line) then start()'s lines: the head cannot be
    told from the look-alike, so the applier refuses instead of writing into stop()."""
    original = (
        "function start() {\n  init();\n  serve();\n}\n\nfunction stop() {\n  flush();\n  close();\n}\n"
    )
    snippet = "// ... existing code ...\n  flush();\n  init();\n  serve();\n// ... existing code ...\n"
    result = apply_snippet(original, snippet, language="javascript")
    assert result.reason == Refusal.OUT_OF_ORDER, result.merged


def test_a_marker_between_two_segments_stands_for_at_least_one_line():
    """The marker inside the `if` stands for `token = raw.slice(7);`: the next segment's new line
    `token = raw.slice(6);` is an insertion in the new `else if`, not a rewrite of that line."""
    original = (
        "function auth(raw) {\n  let token;\n  if (raw.startsWith('Bearer ')) {\n    token = raw.slice(7);\n"
        "  } else {\n    return null;\n  }\n  return token;\n}\n"
    )
    snippet = (
        "// ... existing code ...\n  let token;\n  if (raw.startsWith('Bearer ')) {\n    // ... existing code ...\n"
        "  } else if (raw.startsWith('Token ')) {\n    token = raw.slice(6);\n  } else {\n    return null;\n  }\n"
        "// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace(
        "  } else {", "  } else if (raw.startsWith('Token ')) {\n    token = raw.slice(6);\n  } else {"
    )


def test_python_merges_are_checked_by_the_compiler_too():
    """tree-sitter-python accepts a `with` whose body is empty; Python does not: such a merge is refused."""
    original = "class Store:\n    def write(self, rows):\n        with self.conn:\n            self.conn.executemany(Q, rows)\n"
    snippet = (
        "class Store:\n    def write(self, rows):\n        with self.lock:\n            with self.conn:\n"
        "        # ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    if result.ok:
        compile(result.merged, "merged.py", "exec")


def test_a_call_whose_argument_spans_lines_is_not_a_unit_the_snippet_moved():
    """`writeJSON(w, ..., map[string]any{` in the edited block looks like a header named writeJSON; the
    other handler's call of the same shape must stay where it is (it was dropped as a "moved" unit)."""
    original = (
        'func Live(w http.ResponseWriter) {\n\twriteJSON(w, http.StatusOK, map[string]any{\n\t\t"status": "ok",\n'
        "\t})\n}\n\nfunc Ready(w http.ResponseWriter) {\n\tif err := ping(); err != nil {\n"
        '\t\twriteJSON(w, 503, map[string]any{"status": "down"})\n\t\treturn\n\t}\n}\n'
    )
    snippet = (
        "// ... existing code ...\n\tif err := ping(); err != nil {\n\t\twriteJSON(w, 503, map[string]any{\n"
        '\t\t\t"status": "down",\n\t\t\t"error":  err.Error(),\n\t\t})\n\t\treturn\n\t}\n// ... existing code ...\n'
    )
    result = apply_snippet(original, snippet, language="go")
    assert result.merged == original.replace(
        '\t\twriteJSON(w, 503, map[string]any{"status": "down"})\n',
        '\t\twriteJSON(w, 503, map[string]any{\n\t\t\t"status": "down",\n\t\t\t"error":  err.Error(),\n\t\t})\n',
    )


REALISTIC = Path(__file__).parent / "data" / "realistic"


# Realistic cases the applier still merges wrongly, each open for the reason given (a fresh round of authors,
# `w_*` to `z_*`, scored once before its fixes, left these): the list must shrink, never grow.
KNOWN_WRONG = {
    # a new select-all `<th>` cell above the columns' map: the old empty `<th />` is kept beside it
    "w_tsx_datatable_nulls_select_all",
    # rows up to `negative`, then the table's `}`: by omission that deletes the `empty` row after it, which
    # the author meant kept (a snippet that stops short); the two readings conflict
    "y_go_parse_size_lowercase_case",
    # a context line without its trailing comma (`WriteTimeout: *writeTimeout`) does not anchor, and no Go
    # grammar is installed to catch the duplicate it leaves
    "z_go_config_drop_debug_flag_stale_comma",
}


def test_the_realistic_set_is_merged_exactly_or_refused_never_written_wrong():
    """The hand-written realistic cases (every shape, seven languages): no wrong file but the known ones
    above, and at least 87 % of the merge cases exact (`python benchmarks/bench_apply.py` prints the table
    by shape)."""
    cases = load_cases(REALISTIC)
    outcomes = {}
    for case in cases:
        result = apply_snippet(case.original, case.snippet, language=case.language)
        if case.expect == "refuse":
            outcomes[case.case_id] = "refused_ok" if not result.ok else "wrong"
        elif result.ok:
            outcomes[case.case_id] = "exact" if result.merged == case.final else "wrong"
        else:
            outcomes[case.case_id] = "refused"
    assert {cid for cid, outcome in outcomes.items() if outcome == "wrong"} == KNOWN_WRONG
    merges = [c for c in cases if c.expect == "merge"]
    # 87.5 % today (727 of 831): each fresh round's held-out cases are harder than the last (the sixth
    # round's first run refused 12 of its 80 merges), and a refusal goes to the model in the hybrid
    assert sum(outcomes[c.case_id] == "exact" for c in merges) >= 0.87 * len(merges)
    assert {c.language for c in cases} >= {
        "python",
        "typescript",
        "tsx",
        "javascript",
        "markdown",
        "rust",
        "go",
    }
    assert len(cases) >= 60 and sum(c.expect == "refuse" for c in cases) >= 8


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "language: python\nshape: x\nexpect: merge\n=== original ===\na\n=== snippet ===\nb\n",
            "final section",
        ),
        (
            "language: python\nshape: x\nexpect: refuse\n=== original ===\na\n=== snippet ===\nb\n=== final ===\nc\n",
            "none",
        ),
        ("lang: python\n=== original ===\na\n=== snippet ===\nb\n", "bad header line"),
        ("language: python\nshape: x\nexpect: merge\n=== original ===\na\n", "original/snippet"),
    ],
)
def test_a_malformed_case_file_is_an_error_naming_it(text, problem):
    with pytest.raises(ValueError, match=problem) as err:
        parse_case(text, "broken_case")
    assert "broken_case" in str(err.value)


def test_a_case_file_keeps_its_texts_byte_exact():
    text = "language: go\nshape: anchored\nexpect: merge\nnote: n\n=== original ===\n\tx := 1\n\n=== snippet ===\n// ...\n=== final ===\n\tx := 2\n"
    case = parse_case(text, "c")
    assert (case.original, case.snippet, case.final) == ("\tx := 1\n\n", "// ...\n", "\tx := 2\n")
    assert case.as_row()["edit_kind"] == "anchored" and case.as_row()["generator"] == "hand_written"


def test_the_cli_reads_the_language_from_the_extension(tmp_path):
    """A Markdown file: a section given without markers replaces that section only."""
    original = tmp_path / "README.md"
    original.write_text("# T\n\nIntro.\n\n## Install\n\npip install t\n\n## Usage\n\nRun t.\n")
    snippet = tmp_path / "snippet.md"
    snippet.write_text("## Install\n\npip install t[all]\n")
    merged = invoke("apply", original, snippet)
    assert merged.exit_code == 0 and merged.output == original.read_text().replace(
        "t\n\n## Usage", "t[all]\n\n## Usage"
    )
    written = invoke("apply", original, snippet, "-o", tmp_path / "out.md")
    assert written.exit_code == 0 and "read as units" in written.stderr


def test_a_merge_that_unbalances_the_brackets_of_a_rust_file_is_refused():
    """No grammar for Rust here: the brackets are the check (a lone `}` placed where it closes nothing)."""
    original = "fn a() -> i32 {\n    1\n}\n\nfn b() -> i32 {\n    2\n}\n"
    broken = "// ... existing code ...\nfn b() -> i32 {\n    3\n}\n}\n"
    result = apply_snippet(original, broken, language="rust")
    assert result.reason == Refusal.BREAKS_SYNTAX
    escaped = 'fn red() -> &str {\n    "\\x1b[31m"\n}\n'  # a bracket in a string is not code
    snippet = 'fn red() -> &str {\n    "\\x1b[31;1m {"\n}\n'
    assert apply_snippet(escaped, snippet, language="rust").ok
    fine = apply_snippet(original, "// ... existing code ...\nfn b() -> i32 {\n    3\n}\n", language="rust")
    assert fine.merged == original.replace("    2", "    3")


def test_a_rewritten_signature_keeps_its_unit_from_counting_as_overrun():
    """The head `@click.argument(...)` opens all three commands; only sync's place reaches the tail. Its
    `def sync(` line, edited by the snippet, is a header the snippet names (it was taken for a block the
    placement overruns, and the head-only place at `verify` won, dropping verify's decorators)."""
    arg = '@click.argument("source")\n'
    original = (
        f"@cli.command()\n{arg}def init(source):\n    make(source)\n\n\n"
        f"@cli.command()\n{arg}def sync(source):\n    for path in walk(source):\n        copy(path)\n"
        '    echo("copied")\n\n\n'
        f"@cli.command()\n{arg}def verify(source):\n    check(source)\n"
    )
    snippet = (
        '# ... existing code ...\n@click.option("--dry-run", is_flag=True)\n'
        f"{arg}def sync(source, dry_run):\n    for path in walk(source):\n        if not dry_run:\n"
        '            copy(path)\n    echo("done")\n# ... existing code ...\n'
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace(
        f'{arg}def sync(source):\n    for path in walk(source):\n        copy(path)\n    echo("copied")\n',
        f'@click.option("--dry-run", is_flag=True)\n{arg}def sync(source, dry_run):\n'
        '    for path in walk(source):\n        if not dry_run:\n            copy(path)\n    echo("done")\n',
    )


def test_new_lines_that_end_a_method_inside_a_with_block_replace_the_methods_old_last_line():
    """The segment shows the method from its new signature to its new last lines, then a marker outside it:
    the method's old last statement, inside its `with` block, was kept after the new ones."""
    original = (
        "class Cache:\n    def set(self, key, value):\n        with self._lock:\n            self._evict()\n"
        "            self._entries[key] = Entry(value, self._ttl)\n\n    def delete(self, key):\n"
        "        with self._lock:\n            return self._entries.pop(key, None)\n"
    )
    snippet = (
        "# ... existing code ...\n    def set(self, key, value, ttl=None):\n        with self._lock:\n"
        "            self._evict()\n            expires = self._ttl if ttl is None else ttl\n"
        "            self._entries[key] = Entry(value, expires)\n\n# ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace(
        "    def set(self, key, value):", "    def set(self, key, value, ttl=None):"
    ).replace(
        "            self._entries[key] = Entry(value, self._ttl)\n",
        "            expires = self._ttl if ttl is None else ttl\n            self._entries[key] = Entry(value, expires)\n",
    )


def test_a_new_heading_above_a_sections_first_lines_renames_its_heading():
    """`## Installation` right above the old `## Install` section's code: inserted, it left the old
    heading over an empty section. A heading of another level is a new subsection, the old one stays."""
    original = "# tool\n\nIntro.\n\n## Install\n\n```bash\nnpm i tool\n```\n\n## Usage\n\nRun it.\n"
    snippet = "<!-- ... -->\n\n## Installation\n\n```bash\nnpm i tool\n# or\npnpm add tool\n```\n\n## Usage\n<!-- ... -->\n"
    result = apply_snippet(original, snippet, language="markdown")
    assert result.merged == original.replace("## Install\n", "## Installation\n").replace(
        "npm i tool\n", "npm i tool\n# or\npnpm add tool\n"
    )
    sub = "<!-- ... -->\n\n### From npm\n\n```bash\nnpm i tool\n```\n\n## Usage\n<!-- ... -->\n"
    assert apply_snippet(original, sub, language="markdown").merged == original.replace(
        "## Install\n\n", "## Install\n\n### From npm\n\n"
    )


def test_a_changed_link_reference_definition_replaces_the_old_one():
    """`[Unreleased]: .../v2.3.0...HEAD` edits the `[Unreleased]:` definition (the same label), with a new
    `[2.3.0]:` below it; the old definition was kept beside the new one."""
    base = "https://example.com/compare"
    original = (
        f"## [2.2.1]\n\n- Fix.\n\n[Unreleased]: {base}/v2.2.1...HEAD\n[2.2.1]: {base}/v2.2.0...v2.2.1\n"
    )
    snippet = (
        f"<!-- ... -->\n[Unreleased]: {base}/v2.3.0...HEAD\n[2.3.0]: {base}/v2.2.1...v2.3.0\n"
        f"[2.2.1]: {base}/v2.2.0...v2.2.1\n"
    )
    result = apply_snippet(original, snippet, language="markdown")
    assert result.merged == original.replace(
        f"[Unreleased]: {base}/v2.2.1...HEAD\n",
        f"[Unreleased]: {base}/v2.3.0...HEAD\n[2.3.0]: {base}/v2.2.1...v2.3.0\n",
    )


def test_code_inserted_after_a_blank_line_keeps_the_files_spacing_not_the_snippets():
    """The snippet leaves two blank lines before its closing marker; between Rust items the file has one."""
    original = "fn a() -> i32 {\n    1\n}\n\nimpl R {\n    fn r(&self) {}\n}\n"
    snippet = (
        "// ... existing code ...\n    1\n}\n\nfn b() -> i32 {\n    2\n}\n\n\n// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="rust")
    assert result.merged == original.replace("}\n\nimpl", "}\n\nfn b() -> i32 {\n    2\n}\n\nimpl")


_KEEP_AFTER_BLOCK = [
    (  # the statement after the `if` stays
        "def f(x):\n    if x is None:\n        x = 0\n    return x\n\n\ndef g():\n    pass\n",
        "def f(x):\n    if x is None:\n        x = 0\n        log(x)\n",
        ("        x = 0\n", "        x = 0\n        log(x)\n"),
    ),
    (  # a new line beside the block's last line is inserted, not a rewrite of it
        "class C:\n    def set(self, key, value):\n        with self._lock:\n            self._evict()\n"
        "            self._entries[key] = value\n\n    def get(self, key):\n        return self._entries[key]\n",
        "    def set(self, key, value):\n        with self._lock:\n            self._evict()\n            self._log(key)\n",
        ("            self._evict()\n", "            self._evict()\n            self._log(key)\n"),
    ),
    (  # the `else:` branch stays
        "def f(x):\n    if x >= 0:\n        log(x)\n    else:\n        warn(x)\n\n\ndef g():\n    pass\n",
        "def f(x):\n    if x >= 0:\n        log(x)\n        count(x)\n        track(x)\n",
        ("        log(x)\n", "        log(x)\n        count(x)\n        track(x)\n"),
    ),
]


@pytest.mark.parametrize(
    ("original", "body", "change"), _KEEP_AFTER_BLOCK, ids=["after_if", "beside_last_line", "else_branch"]
)
@pytest.mark.parametrize("closing", ["# ... existing code ...\n", ""], ids=["marker", "no_marker"])
def test_new_lines_at_the_end_of_an_if_or_with_body_keep_what_follows_in_the_function(
    original, body, change, closing
):
    """A second reader's probes of the rule above: new lines that end inside an `if`/`with` body replace
    only the block's own last lines they edit; code after the block, and a line they do not edit, stay
    (with a closing marker at column 0, and with none)."""
    snippet = "# ... existing code ...\n" + body + closing
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace(*change)


def test_a_new_blocks_ending_copied_from_a_later_block_is_not_the_tail():
    """A new `if` inserted after the decode block ends in `return` `}`, as the `if err != nil {` block further
    down does: taking that as the tail replaced the four lines between, which the snippet never shows (a
    wrong file). Inserted, it may be right, or a rewrite whose changed lines are not recognised (see the
    next tests): refused. A block whose opener is rewritten (`if (!a) {` -> `if (!b) {`, same ending)
    still is a rewrite."""
    original = (
        "func create(w http.ResponseWriter, r *http.Request) {\n\tvar req request\n\tif err := decode(r, &req); err != nil {\n"
        '\t\thttp.Error(w, "bad body", 400)\n\t\treturn\n\t}\n\treq.Name = strings.TrimSpace(req.Name)\n'
        '\tuser, err := store.Create(req.Name)\n\tif err != nil {\n\t\thttp.Error(w, "failed", 500)\n\t\treturn\n\t}\n'
        "\twriteJSON(w, user)\n}\n"
    )
    snippet = (
        "// ... existing code ...\n\tvar req request\n\tif err := decode(r, &req); err != nil {\n"
        '\t\thttp.Error(w, "bad body", 400)\n\t\treturn\n\t}\n\tif !strings.Contains(req.Email, "@") {\n'
        '\t\thttp.Error(w, "bad email", 422)\n\t\treturn\n\t}\n// ... existing code ...\n'
    )
    result = apply_snippet(original, snippet, language="go")
    assert result.reason == Refusal.AMBIGUOUS_SCOPE  # insert the new block, or rewrite up to line 12?
    js = "function f(a, b) {\n  prepare();\n  if (!a) {\n    return;\n  }\n  run(a);\n}\n"
    rewritten = (
        "// ... existing code ...\n  prepare();\n  if (!b) {\n    return;\n  }\n// ... existing code ...\n"
    )
    assert apply_snippet(js, rewritten, language="javascript").merged == js.replace("(!a)", "(!b)")


def test_a_first_line_that_extends_the_line_above_the_anchor_replaces_it():
    """`render(key, sizes)` -> `render(key, sizes, { signal })` right above the unchanged `return`: an edit of
    that line (every old word kept, in order), not a new line beside it."""
    original = (
        "async function thumb(job) {\n  try {\n    await render(job.key, sizes);\n    return { ok: true };\n"
        "  } catch (err) {\n    return { ok: false };\n  }\n}\n"
    )
    snippet = (
        "// ... existing code ...\n    await render(job.key, sizes, { signal: AbortSignal.timeout(30_000) });\n"
        "    return { ok: true };\n// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace("sizes);", "sizes, { signal: AbortSignal.timeout(30_000) });")


def test_a_new_heading_above_the_middle_of_a_section_is_refused():
    """`## Getting started`, new text, then the `## Installation` section's code: a rename of that section or
    a new one splitting it? It was inserted inside the section (or, once that place was doubted, under
    another heading); it is refused. Right above the section's first lines it is a rename (see above)."""
    original = (
        "# tool\n\n## Installation\n\nInstall with Cargo:\n\n```sh\ncargo install tool\n```\n\n"
        "## Usage\n\n```sh\ntool run\n```\n"
    )
    snippet = (
        "<!-- ... -->\n## Getting started\n\nInstall with Homebrew:\n\n```sh\nbrew install tool\n```\n\n"
        "Or with Cargo:\n\n```sh\ncargo install tool\n```\n<!-- ... -->\n"
    )
    result = apply_snippet(original, snippet, language="markdown")
    assert result.reason == Refusal.AMBIGUOUS_SCOPE and "'## Installation' (line 3)" in result.detail


@pytest.mark.parametrize(
    ("language", "original", "new"),
    [
        ("rust", "use std::io;\nuse std::fs;\n\nfn main() {}\n", "use std::io::Write;"),
        (
            "python",
            'p.add_argument("--input")\np.add_argument("--out")\n',
            'p.add_argument("--input-format", choices=["csv", "json"])',
        ),
    ],
    ids=["use_path", "option"],
)
def test_a_new_line_that_merely_starts_like_the_line_above_the_anchor_is_inserted(language, original, new):
    """A second reader's probes: a line that keeps the old one's words and adds more (`use std::io::Write;`
    above `use std::fs;`) is a new sibling, not an edit; only a call that gains arguments is one."""
    lines = original.splitlines(keepends=True)
    marker = "# ... existing code ...\n" if language == "python" else "// ... existing code ...\n"
    snippet = marker + new + "\n" + lines[1] + marker
    result = apply_snippet(original, snippet, language=language)
    assert result.merged == original.replace(lines[1], new + "\n" + lines[1], 1)


def test_a_rewrite_whose_changed_lines_are_not_recognised_is_refused_not_duplicated():
    """`const limit = 10;` + its guard -> `const max = ...;` + a guard with the same ending: the tail would
    rewrite them, but the renamed line is no recognisable edit, so the new block's ending may be copied from
    the old one; inserting the new lines kept both guards. The applier refuses, and the model decides."""
    original = (
        "function take(items) {\n  check(items);\n  prepare(items);\n  const limit = 10;\n"
        "  if (items.length > limit) {\n    return [];\n  }\n  return items;\n}\n"
    )
    snippet = (
        "// ... existing code ...\n  check(items);\n  prepare(items);\n  const max = config.maxItems;\n"
        "  if (items.length > max) {\n    return [];\n  }\n// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="javascript")
    assert result.reason == Refusal.AMBIGUOUS_SCOPE and "ends like the block at line" in result.detail


@pytest.mark.parametrize(
    ("language", "original", "anchor", "guard"),
    [
        (
            "go",
            "func handle(w http.ResponseWriter, r *http.Request) {\n\tstart := time.Now()\n"
            '\tif err := check(r); err != nil {\n\t\tlog.Printf("check: %v", err)\n\t\thttp.Error(w, "bad", 400)\n'
            '\t\treturn\n\t}\n\tserve(w, r)\n\tlog.Printf("took %v", time.Since(start))\n}\n',
            "\tstart := time.Now()\n",
            '\tif !authorized(r) {\n\t\thttp.Error(w, "forbidden", 403)\n\t\treturn\n\t}\n',
        ),
        (
            "rust",
            "fn load(reader: impl BufRead) -> io::Result<Vec<Entry>> {\n    let mut out = Vec::new();\n"
            "    for line in reader.lines() {\n        let line = line?;\n        if line.starts_with('#') {\n"
            "            continue;\n        }\n        out.push(parse(&line));\n    }\n    Ok(out)\n}\n",
            "        let line = line?;\n",
            "        if line.trim().is_empty() {\n            continue;\n        }\n",
        ),
        (
            "tsx",
            "export function Profile({ user, loading }: Props) {\n  const theme = useTheme();\n  if (loading) {\n"
            "    return null;\n  }\n  return <div className={theme.card}>{user.name}</div>;\n}\n",
            "  const theme = useTheme();\n",
            "  if (!user) {\n    return null;\n  }\n",
        ),
    ],
    ids=["go_auth_guard", "rust_skip_blank", "tsx_early_return"],
)
def test_a_new_guard_above_a_guard_with_the_same_ending_is_not_taken_for_its_rewrite(
    language, original, anchor, guard
):
    """A second reader's probes: a new guard right after the anchor ends in `return` `}` (`continue` `}`) as
    the guard below it does; the tail matched that guard, and the new one replaced it (a wrong file: the old
    check gone). Its opener is no edit of the old one's and its body rewrites nothing of the old body, so it
    may as well be new: the snippet is refused. A grown condition is a rewrite (the next test)."""
    snippet = "// ... existing code ...\n" + anchor + guard + "// ... existing code ...\n"
    result = apply_snippet(original, snippet, language=language)
    assert (
        result.reason == Refusal.AMBIGUOUS_SCOPE
        and "a new block, or the lines up to it rewritten" in result.detail
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  if (cached) {\n", "  if (cached && source === process.env) {\n"),
        ("  if (!session) {\n", "  if (!session || session.expiresAt < Date.now()) {\n"),
    ],
    ids=["and", "or"],
)
def test_a_block_whose_condition_grows_is_a_rewrite_of_it(old, new):
    """`if (cached) {` -> `if (cached && fresh) {` with the same body: the old line, less its `) {`, begins the
    new one, so the tail is the old block's own ending and the block is rewritten in place."""
    original = (
        "export function load(source, session, cached) {\n  const started = Date.now();\n"
        + old
        + "    return cached;\n  }\n  cached = parse(source);\n  return cached;\n}\n"
    )
    snippet = (
        "// ... existing code ...\n  const started = Date.now();\n"
        + new
        + "    return cached;\n  }\n// ...\n"
    )
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace(old, new)


def test_a_merge_that_leaves_a_markdown_fence_open_is_refused():
    """A new section whose first lines copy another's (`Example:` and a bash fence): its new fence line
    replaced the old one and the old fence's code and closer stayed behind, one fence too many, and the rest
    of the file read as code. A merge that leaves a fence open where the original closed them all is
    refused as broken."""
    original = "# T\n\n## Install\n\nExample:\n\n```bash\nnpm i\n```\n\n## License\n\nMIT\n"
    snippet = "<!-- ... -->\n## Uninstall\n\nExample:\n\n```bash\nnpm rm\n```\n<!-- ... -->\n"
    result = apply_snippet(original, snippet, language="markdown")
    assert result.ok or result.reason == Refusal.BREAKS_SYNTAX
    assert not result.ok or result.merged.count("```") % 2 == 0
    unclosed = apply_snippet(
        "# T\n\n```sh\nrun\n```\n", "<!-- ... -->\n```sh\nrun\n<!-- ... -->\n", language="markdown"
    )
    assert (
        unclosed.ok and unclosed.merged.count("```") == 2
    )  # a fence the snippet leaves open is still closed


def test_a_new_first_list_item_joins_the_list():
    """`# Todo`, a blank line, `- Add dark mode`, marker: the new item goes above the old first one without
    the blank line that separates the heading (mirroring it split the list in two)."""
    original = "# Todo\n\n- Fix login bug\n- Update docs\n"
    result = apply_snippet(original, "# Todo\n\n- Add dark mode\n<!-- ... -->\n", language="markdown")
    assert result.merged == "# Todo\n\n- Add dark mode\n- Fix login bug\n- Update docs\n"
    numbered = "Steps:\n\n1. Clone\n2. Build\n"
    result = apply_snippet(numbered, "Steps:\n\n1. Install Rust\n<!-- ... -->\n", language="markdown")
    assert result.merged == "Steps:\n\n1. Install Rust\n1. Clone\n2. Build\n"


def test_a_new_heading_above_another_sections_subheading_is_refused():
    """A new release, `## [1.1.0]` then `### Added`, anchored on the `### Added` of `## [1.0.0]`: inserted, it
    took that section's subsection and left `## [1.0.0]` empty (a wrong file). A rename of the release, or a
    new one whose subheading copies the old one's? Refused. Above a heading of its own level it is a new
    section (the second merge)."""
    original = "# Changelog\n\n## [Unreleased]\n\n## [1.0.0]\n\n### Added\n\n- Y\n"
    snippet = "<!-- ... -->\n## [1.1.0]\n\n### Added\n\n- Z\n<!-- ... -->\n"
    result = apply_snippet(original, snippet, language="markdown")
    assert result.reason == Refusal.AMBIGUOUS_SCOPE and "'## [1.0.0]' (line 5)" in result.detail
    before_level = "<!-- ... -->\n## [1.1.0]\n\n- Z\n\n## [1.0.0]\n<!-- ... -->\n"
    merged = apply_snippet(original, before_level, language="markdown").merged
    assert merged == original.replace("## [1.0.0]", "## [1.1.0]\n\n- Z\n\n## [1.0.0]")


def test_a_changed_command_before_a_bare_fence_keeps_the_tail_above_it():
    """Three install blocks, each version bumped: the last line that occurs is the bare closing fence, which
    ends every block. Trusting nothing after the head put the whole snippet in for the first block (and
    an extra fence stayed behind); the tail is the last run before the fence with a line stronger than a
    fence (`### From source`), and the changed command after it rewrites the old one, fence and all."""
    block = "### {os}\n\n```sh\ncurl -LO https://example.com/v{v}/tool-{os}.tar.gz\nsudo mv tool /usr/local/bin/\n```\n\n"
    tail = "### From source\n\n```sh\ngo install example.com/tool@v{v}\n```\n"

    def readme(v):
        return (
            "# tool\n\n## Installation\n\n"
            + "".join(block.format(os=o, v=v) for o in ("linux", "macos"))
            + tail.format(v=v)
            + "\n## License\n\nMIT\n"
        )

    original, final = readme("0.8.2"), readme("0.9.0")
    body = final[final.index("### linux") : final.index("\n## License")]
    result = apply_snippet(original, "<!-- ... -->\n\n" + body + "\n<!-- ... -->\n", language="markdown")
    assert result.merged == final


def _rust_method(name: str, body: str) -> str:
    """A builder method of an `impl` block (4-space indented), for the Rust cases below."""
    return _rust_fn(f"pub fn {name}(mut self, v: u32) -> Self", body, "self")


def _rust_fn(head: str, *body: str, attr: str = "") -> str:
    return (
        (attr and f"    {attr}\n") + f"    {head} {{\n" + "".join(f"        {x}\n" for x in body) + "    }\n"
    )


def test_two_sibling_units_are_not_one_whole_unit():
    """`pub fn retries(..) { .. }` then `pub fn user_agent(..) { .. }`: the segment starts with a signature
    and ends with a closer, but it is two units, not one to find by name; read as one, it replaced `retries`
    alone and kept the deprecated method between them that the snippet leaves out."""

    def method(name, field):
        return _rust_method(name, f"self.{field} = Some(v);")

    original = (
        "impl Builder {\n"
        + method("timeout", "timeout")
        + "\n"
        + method("retries", "retries")
        + "\n"
        + "    #[deprecated]\n"
        + method("max_retries", "retries")
        + "\n"
        + method("user_agent", "ua")
        + "}\n"
    )
    snippet = (
        "impl Builder {\n    // ... existing code ...\n\n"
        + method("retries", "retries")
        + "\n"
        + method("user_agent", "ua")
        + "\n    // ... existing code ...\n}\n"
    )
    result = apply_snippet(original, snippet, language="rust")
    assert result.merged == original.replace(
        "    #[deprecated]\n" + method("max_retries", "retries") + "\n", ""
    )


def test_tests_are_told_apart_by_their_titles():
    """`test("returns 404", ..)` and `test("rejects an unknown sort", ..)` are two units: by the bare name
    `test` the new test's opener was an edit of the next one's, so the tail `});` replaced that test (once
    the segment was no longer taken for one whole unit, the test above)."""

    def case(title, path, status):
        return f'  test("{title}", async () => {{\n    const res = await get("{path}");\n    expect(res.status).toBe({status});\n  }});\n'

    original = (
        'describe("books", () => {\n'
        + case("lists books", "/books", 200)
        + "\n"
        + case("returns 404", "/books/9", 404)
        + "});\n"
    )
    new = case("rejects a bad sort", "/books?sort=price", 400)
    snippet = (
        "// ... existing code ...\n"
        + case("lists books", "/books", 200)
        + "\n"
        + new
        + "\n// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="javascript")
    assert result.ok or result.reason == Refusal.AMBIGUOUS_SCOPE
    assert not result.ok or result.merged == original.replace(
        '\n  test("returns 404"', "\n" + new + '\n  test("returns 404"'
    )


def test_a_new_named_unit_whose_ending_copies_the_next_one_is_inserted():
    """`timeout` shown, then a new `max_retries` whose `self` `}` ending is that of the next method
    (`ca_bundle`, another name): a new method beside it, not a rewrite of it; nor is it refused as one that
    might be (the openers look alike, the bodies differ; once the segment was no longer one whole unit)."""

    method = _rust_method

    original = (
        "impl Builder {\n"
        + method("timeout", "self.t = v;")
        + "\n"
        + method("ca_bundle", "self.ca = Some(v);")
        + "}\n"
    )
    new = method("max_retries", "self.retries = v;")
    snippet = (
        "// ... existing code ...\n"
        + method("timeout", "self.t = v;")
        + "\n"
        + new
        + "// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="rust")
    assert result.merged == original.replace("\n    pub fn ca_bundle", "\n" + new + "\n    pub fn ca_bundle")


def test_a_segment_that_would_rename_a_sibling_into_a_unit_declared_elsewhere_is_refused():
    """The decorators and first lines of `export` are also those of `summary` below it: anchored there, the
    new `def export(...)` line replaced `def summary(...)`, and the old `export` was dropped as moved (a
    wrong file). A unit the file declares elsewhere is not written over another one: refused."""
    command = '@cli.command()\n{since}@click.option("--out", default="-")\n@click.pass_obj\ndef {name}(conn, out{extra}):\n    rows = fetch(conn{extra})\n    if not rows:\n        return\n    {body}\n'
    since = '@click.option("--since", default=None)\n'
    original = (
        command.format(since="", name="export", extra="", body="dump(rows, out)")
        + "\n\n"
        + command.format(since=since, name="summary", extra=", since", body="count(rows, out)")
    )
    snippet = '# ... existing code ...\n@click.option("--since", default=None)\n@click.option("--out", default="-")\n@click.pass_obj\ndef export(conn, out, since):\n    rows = fetch(conn, since)\n    if not rows:\n# ... existing code ...\n'
    result = apply_snippet(original, snippet, language="python", check_syntax=False)
    assert result.reason == Refusal.AMBIGUOUS_ANCHOR and "which the file declares elsewhere" in result.detail


def test_a_top_level_assignment_moved_with_its_helpers_leaves_its_old_place():
    """The helpers and the regex they use move above `create`: the functions' old copies went (moved units)
    but the `_EMAIL_RE = ...` line stayed at the bottom, defined twice. A module-level assignment written
    among the new lines, whose only copy lies in kept code, moves too."""
    regex = '_EMAIL_RE = re.compile(r"^\\S+@\\S+$")\n'
    helper = "def _check(email):\n    return _EMAIL_RE.match(email)\n"
    create = "def create(email):\n    return _check(email)\n"
    remove = "def remove(email):\n    _check(email)\n    return drop(email)\n"
    original = "import re\n\n\n" + create + "\n\n" + remove + "\n\n" + regex + "\n\n" + helper
    snippet = (
        "# ... existing code ...\nimport re\n\n\n"
        + regex
        + "\n\n"
        + helper
        + "\n\n"
        + "def create(email):\n# ... existing code ...\n"
        + remove
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == "import re\n\n\n" + regex + "\n\n" + helper + "\n\n" + create + "\n\n" + remove


def test_a_signature_rewritten_over_several_lines_replaces_the_one_line_it_was():
    """`export function InvoiceList({ invoices, onSelect }: Props) {` rewritten one parameter a line, with the
    first body line changed and nothing unchanged shown: the multi-line header edits the one line that
    declares the same name, and the lines inside the function that follow are placed by what they edit."""
    original = (
        'import { useState } from "react";\n\nexport function InvoiceList({ invoices, onSelect }: Props) {\n'
        '  const [filter, setFilter] = useState<Filter>("all");\n\n  return <List items={invoices} filter={filter} />;\n}\n'
    )
    header = 'export function InvoiceList({\n  invoices,\n  onSelect,\n  initialFilter = "all",\n}: Props & { initialFilter?: Filter }) {\n'
    state = "  const [filter, setFilter] = useState<Filter>(initialFilter);\n"
    snippet = "// ... existing code ...\n" + header + state + "\n  // ... existing code ...\n"
    result = apply_snippet(original, snippet, language="tsx")
    old_header = "export function InvoiceList({ invoices, onSelect }: Props) {\n"
    assert result.merged == original.replace(old_header, header).replace(
        '  const [filter, setFilter] = useState<Filter>("all");\n', state
    )


def test_lines_below_a_multi_line_signature_anchor_in_its_function():
    """A new parameter added by rewriting the signature over several lines, then the function's unchanged
    first line: that line's parent in the snippet is the header's closing line `): Promise<T> {`, which is
    the old one-line header's opener, so it anchors (it did not: no line anchored, and the snippet was refused)."""
    original = (
        "export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {\n"
        "  const headers = new Headers(init.headers);\n  return send<T>(path, { ...init, headers });\n}\n"
    )
    header = "export async function request<T>(\n  path: string,\n  init: RequestInit = {},\n  timeoutMs = 15_000,\n): Promise<T> {\n"
    snippet = header + "  const headers = new Headers(init.headers);\n  // ... existing code ...\n"
    result = apply_snippet(original, snippet, language="typescript")
    assert result.merged == header + original.split("\n", 1)[1]


def test_a_new_declaration_of_a_name_replaces_the_old_one_above_the_anchor():
    """`const response = await fetch(..)` becomes `let response: Response;` and a `try` block that assigns it:
    the new declaration of the same name replaces the old line right above the anchor (`const` and `let`
    declare the same name, which one scope declares once); inserted, the old fetch stayed too."""
    original = (
        "async function get(url) {\n  const headers = build();\n\n  const response = await fetch(url, { headers });\n"
        "  if (!response.ok) {\n    throw new Error(url);\n  }\n  return response.json();\n}\n"
    )
    new = (
        "  let response: Response;\n  try {\n    response = await fetch(url, { headers, signal });\n  } finally {\n"
        "    clearTimeout(timer);\n  }\n"
    )
    snippet = "// ... existing code ...\n\n" + new + "  if (!response.ok) {\n// ... existing code ...\n"
    result = apply_snippet(original, snippet, language="typescript")
    assert result.merged == original.replace("  const response = await fetch(url, { headers });\n", new)


def test_a_lone_changed_line_inside_a_function_the_snippet_opened_is_sought_in_that_function():
    """The signature rewritten, then a marker inside the function, one changed `fetch` line, a marker and the
    closing `}`: the same old line is in every function of the file, so it was refused. The marker stands
    inside the function the previous segment opened: the changed line is sought there only."""

    def fn(name, args):
        return f"export async function {name}({args}) {{\n  const url = base + '/{name}';\n  const res = await fetch(url, {{ headers: auth() }});\n  return read(res);\n}}\n"

    original = (
        fn("listInvoices", "id: string")
        + "\n"
        + fn("getInvoice", "id: string")
        + "\n"
        + fn("listCustomers", "page = 1")
    )
    new_header = "export async function getInvoice(\n  id: string,\n  signal?: AbortSignal,\n) {\n"
    new_fetch = "  const res = await fetch(url, { headers: auth(), signal });\n"
    snippet = (
        "// ... existing code ...\n"
        + new_header
        + "  // ... existing code ...\n"
        + new_fetch
        + "  // ... existing code ...\n}\n\n// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="typescript")
    expected_fn = fn("getInvoice", "id: string").replace(
        "export async function getInvoice(id: string) {\n", new_header
    )
    expected_fn = expected_fn.replace("  const res = await fetch(url, { headers: auth() });\n", new_fetch)
    assert result.merged == original.replace(fn("getInvoice", "id: string"), expected_fn)


def test_a_changed_statement_does_not_move_a_multi_line_call_of_the_same_name():
    """The changed `const res = await fetch(url, { .., signal });` names `res`, as the multi-line
    `const res = await fetch(url, {` of another function does: that call was taken for a unit the snippet
    moved, and deleted. A declaration whose value is a call is no unit."""
    original = (
        "function get(url) {\n  const res = await fetch(url, { headers: auth() });\n  return read(res);\n}\n\n"
        'function post(url, body) {\n  const res = await fetch(url, {\n    method: "POST",\n    body,\n  });\n'
        "  return read(res);\n}\n"
    )
    new = "  const res = await fetch(url, { headers: auth(), signal });\n"
    snippet = "function get(url) {\n" + new + "  return read(res);\n}\n\n// ... existing code ...\n"
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace("  const res = await fetch(url, { headers: auth() });\n", new)


def test_a_rewritten_list_step_above_the_anchor_without_a_marker_is_refused():
    """No leading marker; step 2 of a README list rewritten (its text and its command), then the unchanged
    step 3: the new step was inserted above step 3 beside the old one (a wrong file), and its head was a
    ```` ```sh ```` fence of step 1. Fences anchor weakly now, and new lines above the anchor that look like
    the lines above it (an ordered item of the same number, a reworded line) may rewrite them or be new:
    refused. With a marker above them they are new, as a marker says the lines above are kept (a second
    reader's probes: a new table row, bullet or paragraph like the one above it)."""
    step = "{n}. {text}\n\n   ```sh\n   {command}\n   ```\n\n"
    original = (
        "# tool\n\n## Getting started\n\n"
        + step.format(n=1, text="Clone it:", command="git clone https://example.com/tool")
        + step.format(n=2, text="Install the dependencies:", command="npm install")
        + step.format(n=3, text="Build it:", command="npm run build")
        + "## License\n\nMIT\n"
    )
    new_step = step.format(
        n=2, text="Install the dependencies with pnpm:", command="pnpm install --frozen-lockfile"
    )
    snippet = new_step + "3. Build it:\n<!-- ... existing content ... -->\n"
    result = apply_snippet(original, snippet, language="markdown")
    assert result.reason == Refusal.AMBIGUOUS_SCOPE and "look like a rewrite of line 11" in result.detail
    table = "| Flag | Meaning |\n| --- | --- |\n| `--color` | Force colour |\n| `--quiet` | Only errors |\n"
    snippet = "<!-- ... -->\n| `--no-color` | Disable colour |\n| `--quiet` | Only errors |\n<!-- ... -->\n"
    merged = apply_snippet(table, snippet, language="markdown").merged
    assert merged == table.replace("| `--quiet`", "| `--no-color` | Disable colour |\n| `--quiet`")


def test_a_changed_route_decorator_is_an_edit_but_another_click_option_is_not():
    """`@router.get("/items/")` -> `@router.get("/items", response_model=..)`: the same decorator edited (told
    apart by its string argument, it was kept beside the new one, a route registered twice). In a stack of
    `@click.option`s the argument does tell siblings apart: `--since` is no edit of `--format`."""
    original = '@router.get("/items/")\ndef list_items(db=Depends(get_db)):\n    return query(db)\n'
    new = '@router.get("/items", response_model=list[Item])\n'
    snippet = new + "def list_items(db=Depends(get_db)):\n# ... existing code ...\n"
    assert apply_snippet(original, snippet, language="python").merged == original.replace(
        '@router.get("/items/")\n', new
    )


def test_code_lines_of_a_markdown_example_do_not_move():
    """A second reader's probe: the Streaming section's new example repeats `client = Client(...)` of the
    Quick start example. Taken for a one-line declaration the snippet moved, it was deleted from the Quick
    start example; lines of Markdown (code examples) never move."""
    start = '```python\nfrom acme import Client\n\nclient = Client(api_key="sk-...")\n'
    original = (
        "## Quick start\n\n" + start + "print(client.models.list())\n```\n\n## Streaming\n\nComing soon.\n"
    )
    example = start + 'for chunk in client.stream("Hi"):\n    print(chunk)\n```\n'
    snippet = "<!-- ... -->\n## Streaming\n\n" + example
    result = apply_snippet(original, snippet, language="markdown")
    assert result.merged == original.replace("Coming soon.\n", example)


def test_a_one_line_element_spread_over_lines_above_the_anchor_is_replaced():
    """`<td>{order.status}</td>` becomes `<td>` / a pill showing `{order.status}` / `</td>`, right above the
    unchanged total cell: the new element rewrites the old one (same tag, its content kept as a child);
    inserted, the row had both cells. A new cell that only passes the content to an attribute
    (`<Badge of={order.status} />`) is new (a second reader's probes)."""
    row = "          <tr>\n            <td>{order.number}</td>\n{status}            <td>{order.total}</td>\n          </tr>\n"
    old = "            <td>{order.status}</td>\n"
    new = '            <td>\n              <span className="pill">{order.status}</span>\n            </td>\n'
    original = "export function Row({ order }) {\n  return (\n" + row.replace("{status}", old) + "  );\n}\n"
    snippet = (
        "{/* ... existing code ... */}\n"
        + new
        + "            <td>{order.total}</td>\n{/* ... existing code ... */}\n"
    )
    result = apply_snippet(original, snippet, language="tsx")
    assert result.merged == original.replace(old, new)
    badge = "            <td>\n              <Badge of={order.status} />\n            </td>\n"
    snippet = (
        "{/* ... existing code ... */}\n"
        + badge
        + "            <td>{order.total}</td>\n{/* ... existing code ... */}\n"
    )
    result = apply_snippet(original, snippet, language="tsx")  # the content only in an attribute: a new cell
    assert result.merged == original.replace(old, old + badge)


def test_a_go_type_moved_up_with_its_method_leaves_its_old_place():
    """`Multi` (a one-line type and its `Notify` method) moves up beside the interface: the method was found
    by name only once Go methods are named by their type (`func (m Multi) Notify` is `Multi.Notify`, not one
    more `Notify`), and the one-line `type Multi []Notifier` with its doc comment moves too."""

    def method(recv, body):
        return f"func ({recv}) Notify(ctx context.Context) error {{\n\t{body}\n\treturn nil\n}}\n"

    multi = "// Multi fans out.\ntype Multi []Notifier\n\n" + method("m Multi", "fanOut(m)")
    original = (
        "package notify\n\ntype Notifier interface {\n\tNotify(ctx context.Context) error\n}\n\n"
        "type Email struct{}\n\n" + method("e Email", "send(e)") + "\n" + multi
    )
    snippet = (
        "// ... existing code ...\ntype Notifier interface {\n\tNotify(ctx context.Context) error\n}\n\n"
        + multi
        + "\ntype Email struct{}\n\n"
        + method("e Email", "send(e)")
    )
    result = apply_snippet(original, snippet, language="go")
    assert result.merged == snippet.replace("// ... existing code ...\n", "package notify\n\n")


def test_a_decorator_rewritten_over_several_lines_replaces_the_old_one():
    """`@router.delete("/{item_id}", status_code=204)` rewritten as `@router.delete(` with one argument a
    line: the same decorator (identified by its callee; told apart by their string argument, the two were
    not, and the old one stayed)."""
    original = (
        '@router.get("/{item_id}")\ndef read(item_id: int):\n    return get(item_id)\n\n\n'
        '@router.delete("/{item_id}", status_code=204)\ndef delete(item_id: int):\n    remove(item_id)\n'
    )
    new = '@router.delete(\n    "/{item_id}",\n    status_code=204,\n    dependencies=[Depends(admin)],\n)\n'
    snippet = "# ... existing code ...\n" + new + "def delete(item_id: int):\n    remove(item_id)\n"
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace('@router.delete("/{item_id}", status_code=204)\n', new)


def test_a_new_test_after_a_test_keeps_the_next_tests_attribute():
    """New tests after `trims_...`: the head run went on into the next test's `#[test]` (the same line starts
    the new test), so the new test went after that attribute, and then the forward walk took it as the
    old one's rewrite; either way `truncate_keeps_short_slugs` lost its `#[test]`. A decoration that ends a
    run belongs to the line after it."""

    def test(name, body):
        return _rust_fn(f"fn {name}()", body, attr="#[test]")

    original = (
        "mod tests {\n    use super::*;\n\n"
        + test("trims", 'assert_eq!(slugify(" a "), "a");')
        + "\n"
        + test("truncate_keeps", 'assert_eq!(truncate("ab", 9), "ab");')
        + "}\n"
    )
    new = test("empty_input", 'assert_eq!(slugify(""), "");')
    snippet = (
        "// ... existing code ...\n\n"
        + test("trims", 'assert_eq!(slugify(" a "), "a");')
        + "\n"
        + new
        + "\n    // ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="rust")
    assert result.merged == original.replace(
        "\n    #[test]\n    fn truncate_keeps", "\n" + new + "\n    #[test]\n    fn truncate_keeps"
    )


def test_a_changed_print_call_is_an_edit_and_a_repeated_one_does_not_move():
    """A second reader's probes: `print("Total:", total)` -> `print(f"Total: ..")` right below the anchor was
    inserted beside the old call once calls took their first string as part of their name (only calls that
    open a block, `test("..", () => {`, do); and a script's new last `print()` deleted its earlier `print()`,
    taken for a one-line declaration the snippet moved (only declarations move: `X = ...`, `type T ...`)."""
    original = 'def report(rows):\n    total = sum(r.amount for r in rows)\n    print("Total:", total)\n    return total\n'
    snippet = '# ... existing code ...\n    total = sum(r.amount for r in rows)\n    print(f"Total: {total:.2f}")\n# ... existing code ...\n'
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace('print("Total:", total)', 'print(f"Total: {total:.2f}")')
    script = (
        'import csv\n\nrows = load()\nprint("Total:", len(rows))\nprint()\nfor r in rows:\n    print(r)\n'
    )
    snippet = '# ... existing code ...\nfor r in rows:\n    print(r)\nprint()\nprint("Largest:", max(rows))\n'
    result = apply_snippet(script, snippet, language="python")
    assert result.merged == script + 'print()\nprint("Largest:", max(rows))\n'


def test_a_segment_ending_in_a_lone_closer_takes_its_tail_from_the_run_above_it():
    """Two tests given with their new `admin_headers` argument, the second cut after its call's `)`, a
    marker inside it: the last line that occurs is the weak `)`, so no tail was trusted, the second test
    went in as new after the first, and the old one stayed (and, read as a unit the snippet moved, lost
    its asserts). The tail is the last run above it with a stronger line (the `client.post(` call)."""

    def test(name, call, path, extra):
        return (
            f"def test_{name}(client, project{extra}):\n    response = client.{call}(\n        f\"/projects/{{project['id']}}{path}\",\n"
            "        headers=HEADERS,\n    )\n    assert response.status_code == 200\n"
        )

    original = test("delete", "delete", "", "") + "\n\n" + test("archive", "post", "/archive", "")
    snippet = (
        "# ... existing code ...\n"
        + test("delete", "delete", "", ", admin").replace("HEADERS", "admin")
        + "\n\n"
        + test("archive", "post", "/archive", ", admin")
        .replace("HEADERS", "admin")
        .replace("    assert response.status_code == 200\n", "")
        + "    # ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace("project):", "project, admin):").replace("HEADERS", "admin")


def test_a_quoted_key_with_dots_identifies_its_entry():
    """`"reports.tasks.*": {"queue": "reports"}` replaces `"reports.tasks.*": {"queue": "email"}` right after
    the anchor: quoted keys with any characters name their entry (it was inserted beside the old one)."""
    original = 'ROUTES = {\n    "mail.*": {"queue": "email"},\n    "reports.tasks.*": {"queue": "email"},\n    "billing.*": {"queue": "default"},\n}\n'
    snippet = 'ROUTES = {\n    "mail.*": {"queue": "email"},\n    "reports.tasks.*": {"queue": "reports"},\n    # ... same ...\n}\n'
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace(
        '"reports.tasks.*": {"queue": "email"}', '"reports.tasks.*": {"queue": "reports"}'
    )


def test_a_new_markdown_subsection_named_like_another_releases_is_not_a_move():
    """A new `### Added` in `[Unreleased]`, where only `[0.4.0]` had one: taken for that subsection moved
    up, 0.4.0 lost its `### Added` and its items. A moved section brings its text."""
    original = (
        "# Changelog\n\n## [Unreleased]\n\n### Fixed\n\n- Crash on empty config.\n\n## [0.4.0]\n\n### Added\n\n"
        "- `--dry-run` flag.\n\n### Changed\n\n- Faster sync.\n"
    )
    added = "### Added\n\n- `--exclude` option.\n\n"
    snippet = (
        "<!-- ... -->\n## [Unreleased]\n\n" + added + "### Fixed\n\n- Crash on empty config.\n<!-- ... -->\n"
    )
    result = apply_snippet(original, snippet, language="markdown")
    assert result.merged == original.replace("## [Unreleased]\n\n", "## [Unreleased]\n\n" + added)


def test_a_statement_wrapped_in_a_new_try_block_leaves_its_old_place():
    """`const res = await fetch(url, {` ... `});` right above `if (!res.ok) {` is wrapped in a new `try`,
    its declaration moved up (`let res: Response;`): the new lines hold the old statement one level deeper
    inside the block they open, so they replace it (inserted, the request ran twice)."""
    original = (
        "async function get(url) {\n  const headers = build();\n  const res = await fetch(url, {\n    headers,\n"
        "  });\n  if (!res.ok) {\n    throw new Error(url);\n  }\n  return res.json();\n}\n"
    )
    new = (
        "  let res;\n  try {\n    res = await fetch(url, {\n      headers,\n    });\n  } catch (err) {\n"
        "    throw new NetworkError(url, err);\n  }\n"
    )
    snippet = "// ... existing code ...\n" + new + "  if (!res.ok) {\n// ... existing code ...\n"
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace("  const res = await fetch(url, {\n    headers,\n  });\n", new)


# The rules of the fourth fresh round (`aa_*` to `ad_*`), each from a wrong file it wrote.


def test_a_gap_then_an_edited_line_past_it_replaces_that_line():
    """`]`, a blank line, `__version__ = "2.4.0"`: the snippet's gap is the file's own, and the version line
    after it is edited (a second `__version__` was appended)."""
    original = 'from pkg.a import A\n\n__all__ = [\n    "A",\n]\n\n__version__ = "2.3.1"\n'
    snippet = '# ... existing code ...\n__all__ = [\n    "A",\n    "B",\n]\n\n__version__ = "2.4.0"\n'
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace('"A",\n', '"A",\n    "B",\n').replace("2.3.1", "2.4.0")


def test_the_snippets_last_line_that_wraps_the_files_last_line_edits_it():
    """`main()` -> `sys.exit(main())` at the end of the file, no marker after: kept, `main()` ran twice."""
    original = "import sys\n\n\ndef main():\n    return 0\n\n\nif __name__ == '__main__':\n    main()\n"
    snippet = "# ... existing code ...\nif __name__ == '__main__':\n    sys.exit(main())\n"
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace("    main()\n", "    sys.exit(main())\n")


def test_a_one_line_entry_spread_over_lines_takes_only_its_own_place():
    """`bio: [{...}],` rewritten as `bio: [` / items / `],`: the whole group edits that entry; the entry after
    it (`website`) stayed out of it and was dropped as the rest of the object."""
    original = (
        "export const profile = {\n  email: [{ type: 'email' }],\n  bio: [{ type: 'minLength', value: 10 }],\n"
        "  website: [{ type: 'url' }],\n};\n"
    )
    new = "  bio: [\n    { type: 'minLength', value: 10 },\n    { type: 'maxLength', value: 500 },\n  ],\n"
    snippet = (
        "export const profile = {\n  // ... existing code ...\n  email: [{ type: 'email' }],\n"
        + new
        + "// ...\n"
    )
    result = apply_snippet(original, snippet, language="typescript")
    assert result.merged == original.replace("  bio: [{ type: 'minLength', value: 10 }],\n", new)


def test_a_new_element_spread_over_lines_replaces_the_one_with_its_unique_class():
    """`<span className="item__qty">` -> `<input` / attributes / `/>` with the same className, right after
    the anchor: that element restyled (inserted, the old span stayed beside it)."""
    original = (
        'export function Item({ line }) {\n  return (\n    <li>\n      <div className="item__info">\n'
        "        {line.name}\n      </div>\n"
        '      <span className="item__qty">x {line.quantity}</span>\n'
        '      <span className="item__price">{line.price}</span>\n    </li>\n  );\n}\n'
    )
    new = '      <input\n        type="number"\n        className="item__qty"\n        value={line.quantity}\n      />\n'
    snippet = "// ...\n      </div>\n" + new + "      {/* ... */}\n// ...\n"
    result = apply_snippet(original, snippet, language="tsx")
    assert result.merged == original.replace(
        '      <span className="item__qty">x {line.quantity}</span>\n', new
    )


def test_a_whole_function_without_markers_is_its_new_body_not_a_wrapper_of_its_lets():
    """A marker-less Rust function whose body starts with `let`s and calls (`Ok(total)`): those read as named
    members, so only some lines were edited and the old body was interleaved with the new one."""
    original = (
        "pub fn size(input: &str) -> u64 {\n    let input = input.trim();\n    let value = input.len();\n"
        "    value as u64\n}\n\npub fn duration(input: &str) -> u64 {\n    let input = input.trim();\n"
        "    let secs = input\n        .len();\n    secs as u64\n}\n"
    )
    new = (
        "pub fn duration(input: &str) -> u64 {\n    let input = input.trim();\n    let mut total = 0;\n"
        "    for part in input.split('+') {\n        total += part.len();\n    }\n    Ok(total)\n}\n"
    )
    result = apply_snippet(original, new, language="rust")
    assert result.merged == original[: original.index("pub fn duration")] + new


def test_a_rewritten_unit_above_the_anchor_replaces_the_unit_ending_there():
    """A new `case 'RENAME': {` block, a blank line, then the next `case` as the anchor: it rewrites the
    `case 'RENAME':` that ends right above the anchor (inserted, the reducer had two RENAME cases)."""
    original = (
        "function reducer(state, action) {\n  switch (action.type) {\n    case 'ADD':\n"
        "      return { ...state, items: [...state.items, action.payload] };\n\n    case 'RENAME':\n"
        "      return { ...state, title: action.payload };\n\n    case 'RESET':\n      return initial;\n  }\n}\n"
    )
    new = (
        "    case 'RENAME': {\n      const title = action.payload.trim();\n"
        "      return title ? { ...state, title } : state;\n    }\n"
    )
    snippet = "    // ... existing code ...\n\n" + new + "\n    case 'RESET':\n    // ... existing code ...\n"
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace(
        "    case 'RENAME':\n      return { ...state, title: action.payload };\n", new
    )


def test_a_grouped_import_collapsed_to_one_line_replaces_the_group():
    """Go's `import (` / `"strings"` / `"testing"` / `)` -> `import "testing"`: the group goes."""
    original = 'package slug\n\nimport (\n\t"strings"\n\t"testing"\n)\n\nfunc TestMake(t *testing.T) {\n\tt.Log("x")\n}\n'
    snippet = 'package slug\n\nimport "testing"\n\n// ... existing code ...\n'
    result = apply_snippet(original, snippet, language="go")
    assert result.merged == original.replace('import (\n\t"strings"\n\t"testing"\n)\n', 'import "testing"\n')


def test_a_test_deleted_between_two_long_runs_of_anchors_is_a_deletion_not_a_move():
    """A whole test shown, a test left out, the next one's `#[test]` and header: the placement that deletes
    the left-out test anchors 8 lines; the one that swallows nothing anchors 2 (the last `#[test]` and the
    header), and it read the shown test as moved there."""
    test = '    #[test]\n    fn {name}() {{\n        assert_eq!(parse("{name}"), Ok({value}));\n    }}\n'
    keep, drop, last = (test.format(name=n, value=v) for n, v in (("sync", 1), ("legacy", 2), ("prune", 3)))
    original = "#[cfg(test)]\nmod tests {\n    use super::*;\n\n" + keep + "\n" + drop + "\n" + last + "}\n"
    snippet = (
        "// ... existing code ...\n" + keep + "\n    #[test]\n    fn prune() {\n// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="rust")
    assert result.merged == original.replace(drop + "\n", "")


def test_a_unit_closed_by_its_blank_lines_and_an_outer_marker_ends_there():
    """A view shown whole, then two blank lines (the file's own gap) and a marker at column 0: its old lines
    after the shown ones go, even when they outnumber the new ones."""
    original = (
        "def parse(value):\n    return int(value)\n\n\ndef list_articles():\n    page = parse(request.args['p'])\n"
        "    query = Article.query\n    total = query.count()\n    items = query.limit(page).all()\n"
        "    return jsonify(items=items, total=total)\n\n\ndef get_article(pk):\n    return Article.query.get(pk)\n"
    )
    snippet = (
        "# ... existing code ...\n\n\ndef list_articles():\n    query = Article.query\n"
        "    return paginate(query)\n\n\n# ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    start, end = original.index("def list_articles"), original.index("\n\n\ndef get_article")
    assert result.merged == original[:start] + "def list_articles():\n    query = Article.query\n" + (
        "    return paginate(query)" + original[end:]
    )


def test_a_segment_that_opens_with_a_unit_the_previous_one_left_out_keeps_it():
    """A fixture moved up under another: the first segment's tail copies the fixture at its old place, which
    left out the tests between; the next segment opens with one of them. Placed again keeping it, the fixture
    is inserted and leaves its old place."""
    fixture = "@pytest.fixture\ndef order():\n    return Order(items=[1, 2])\n"
    original = (
        "import pytest\n\n\n@pytest.fixture\ndef pricing():\n    return Pricing()\n\n\ndef test_subtotal(pricing, order):\n"
        "    assert pricing.subtotal(order) == 3\n\n\ndef test_tax(pricing, order):\n    assert pricing.tax(order) == 1\n\n\n"
        + fixture
        + "\n\ndef test_total(pricing, order):\n    assert pricing.total(order) == 4\n"
    )
    snippet = (
        "# ... existing code ...\n    return Pricing()\n\n\n" + fixture + "\n\n# ... existing tests ...\n\n\n"
        "def test_tax(pricing, order):\n    assert pricing.tax(order) == 1\n\n\ndef test_total(pricing, order):\n"
        "    # ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace("\n\n" + fixture, "").replace(
        "    return Pricing()\n", "    return Pricing()\n\n\n" + fixture
    )


def test_depths_compete_less_the_lines_they_would_copy_beside_their_span():
    """A wrapper removed: the button comes back one level shallower between the divider and the status line,
    shown at their own depth. At the button's old depth, the divider and the status line were written again
    inside the wrapper, beside the kept ones."""
    button = '<IconButton label="Save" onClick={save}>\n  <SaveIcon />\n</IconButton>\n'
    indent = lambda text, n: "".join(" " * n + x + "\n" for x in text.splitlines())  # noqa: E731
    original = (
        "export function Toolbar({ save }) {\n  return (\n    <div>\n"
        '      <IconButton label="Undo" onClick={undo}>\n        <UndoIcon />\n      </IconButton>\n'
        '      <span className="divider" />\n      <Tooltip content="Save">\n'
        + indent(button, 8)
        + '      </Tooltip>\n      {saving && <span className="status">Saving</span>}\n    </div>\n  );\n}\n'
    )
    kept = '      <span className="divider" />\n'
    tail = '      {saving && <span className="status">Saving</span>}\n'
    snippet = "// ... existing code ...\n" + kept + indent(button, 6) + tail + "// ... existing code ...\n"
    result = apply_snippet(original, snippet, language="tsx")
    old = '      <Tooltip content="Save">\n' + indent(button, 8) + "      </Tooltip>\n"
    assert result.merged == original.replace(old, indent(button, 6))


# The second reader's probes of those rules (74, in seven languages): the first versions wrote 16 wrong files
# that the older applier had right. Each narrowed rule keeps the older result on these look-alikes.
@pytest.mark.parametrize(
    ("language", "original", "snippet", "old", "new"),
    [
        pytest.param(  # a new field above a sibling of the same class: inserted, the email input stays
            "tsx",
            'export function Signup() {\n  return (\n    <form>\n      <h2 className="title">Sign up</h2>\n'
            '      <input type="email" name="email" className="form-input" />\n    </form>\n  );\n}\n',
            '      {/* ... */}\n      <h2 className="title">Sign up</h2>\n      <input\n        name="name"\n'
            '        className="form-input"\n      />\n      {/* ... */}\n',
            '      <h2 className="title">Sign up</h2>\n',
            '      <h2 className="title">Sign up</h2>\n      <input\n        name="name"\n'
            '        className="form-input"\n      />\n',
            id="restyled-element-needs-the-old-content",
        ),
        pytest.param(  # a submodule import above a group that names `models`: inserted, the group stays
            "python",
            "from django.conf import settings\nfrom django.db import (\n    models,\n    transaction,\n)\n\n\n"
            "def f():\n    return models, transaction, settings\n",
            "# ... existing code ...\nfrom django.conf import settings\nfrom django.db.models import Q\n"
            "# ... existing code ...\n",
            "from django.conf import settings\n",
            "from django.conf import settings\nfrom django.db.models import Q\n",
            id="collapsed-group-needs-its-own-opening",
        ),
        pytest.param(  # a new request step after a gap, the next step of the same name kept
            "typescript",
            'describe("session", () => {\n  it("logs in", async () => {\n    let res = await api.post("/login", creds);\n'
            '    expect(res.status).toBe(200);\n\n    res = await api.get("/me");\n    expect(res.body.name).toBe("ada");\n'
            "  });\n});\n",
            'describe("session", () => {\n  it("logs in", async () => {\n'
            '    let res = await api.post("/login", creds, { withCredentials: true });\n    expect(res.status).toBe(200);\n'
            '\n    res = await api.get("/csrf");\n    expect(res.body.token).toBeDefined();\n    // ... existing code ...\n',
            '    let res = await api.post("/login", creds);\n    expect(res.status).toBe(200);\n\n',
            '    let res = await api.post("/login", creds, { withCredentials: true });\n    expect(res.status).toBe(200);\n'
            '\n    res = await api.get("/csrf");\n    expect(res.body.token).toBeDefined();\n\n',  # spaced like the head
            id="gap-then-edit-only-at-the-files-end",
        ),
        pytest.param(  # a line added after a function's first statement, its `}` not shown: the rest stays
            "go",
            "package app\n\nfunc run(cfg Config) error {\n\tdb, err := open(cfg.DSN)\n\tif err != nil {\n\t\treturn err\n"
            "\t}\n\treturn serve(db)\n}\n\nfunc serve(db *DB) error {\n\treturn nil\n}\n",
            '// ... existing code ...\nfunc run(cfg Config) error {\n\tdb, err := open(cfg.DSN)\n\tlog.Printf("open")\n\n'
            "// ... existing code ...\n",
            "\tdb, err := open(cfg.DSN)\n",
            '\tdb, err := open(cfg.DSN)\n\tlog.Printf("open")\n\n',  # the snippet's blank line kept
            id="closed-unit-needs-its-end-shown",
        ),
        pytest.param(  # a marker-less component with only one arrow handler changed: the rest of it stays
            "tsx",
            'import { useState } from "react";\n\nexport function Form({ save }) {\n'
            "  const [values, setValues] = useState({});\n\n  const handleChange = (e) => {\n    setValues({ ...values, [e.target.name]: e.target.value });\n  };\n\n"
            "  const handleSubmit = (e) => {\n    save(values);\n  };\n\n  return (\n    <form onSubmit={handleSubmit}>\n"
            '      <input name="title" onChange={handleChange} />\n    </form>\n  );\n}\n\n'
            "export function Empty() {\n  return <p>Nothing here</p>;\n}\n",
            "export function Form({ save }) {\n  const handleSubmit = async (e) => {\n    await save(values);\n  };\n}\n",
            "  const handleSubmit = (e) => {\n    save(values);\n",
            "  const handleSubmit = async (e) => {\n    await save(values);\n",
            id="arrow-handlers-are-a-functions-members",
        ),
    ],
)
def test_the_new_rules_leave_their_look_alikes_as_they_were(language, original, snippet, old, new):
    assert original.count(old) == 1
    assert apply_snippet(original, snippet, language=language).merged == original.replace(old, new)


def test_a_segment_opening_with_a_header_it_can_anchor_later_does_not_replace_the_previous_one():
    """`def __str__` opens the second segment and also stands in the first's deleted span (User's): the
    second anchors it in Admin, so the first keeps its deletion."""
    original = (
        "class User:\n    def __init__(self, name):\n        self.name = name\n\n    def __str__(self):\n"
        "        return self.name\n\n    def greet(self):\n        return 'hi'\n\n\nclass Admin(User):\n"
        "    def __str__(self):\n        return 'admin'\n\n    def can(self, perm):\n        return True\n"
    )
    snippet = (
        "class User:\n    def __init__(self, name):\n        self.name = name\n\n    def greet(self):\n"
        "        return 'hi'\n# ... existing code ...\n    def __str__(self):\n        return 'admin!'\n\n"
        "    def can(self, perm):\n# ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace(
        "    def __str__(self):\n        return self.name\n\n", ""
    ).replace("'admin'", "'admin!'")


# The rules of the fifth fresh round (`ae_*` to `ah_*`), each from a wrong file it wrote.


def test_a_new_cli_flag_above_a_lone_option_is_another_option():
    """`@click.option("--dry-run")` right above the anchor, where the command has one `--prefix` option: a
    second option beside it (it replaced `--prefix`). Two flags are two options, stack or not."""
    original = (
        '@cli.command()\n@click.option("--prefix", default="shards/")\n@click.pass_obj\n'
        "def sync(client, prefix):\n    client.upload(prefix)\n"
    )
    snippet = (
        '# ... existing code ...\n@click.option("--dry-run", is_flag=True)\n@click.pass_obj\n'
        "def sync(client, prefix, dry_run):\n    # ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace(
        "@click.pass_obj\ndef sync(client, prefix):",
        '@click.option("--dry-run", is_flag=True)\n@click.pass_obj\ndef sync(client, prefix, dry_run):',
    )


def test_a_new_unit_whose_last_lines_copy_the_next_unit_is_inserted_not_a_rewrite_of_it():
    """A new validator after the last shown one: its decorators and its `return v` are the next validator's
    too. Neither the decorators (edited in place) nor the `return v` (a tail) take the next one's lines."""
    validator = (
        '    @field_validator("{0}")\n    @classmethod\n    def _check_{0}(cls, v):\n        if v {1} 0:\n'
        '            raise ValueError("{0}")\n        return v\n'
    )
    retries, url = validator.format("retries", "<"), validator.format("url", "==")
    new = validator.format("rows", "<=")
    original = "class Settings(BaseSettings):\n    retries: int = 3\n\n" + retries + "\n" + url
    snippet = (
        "class Settings(BaseSettings):\n    # ... existing code ...\n"
        + retries
        + "\n"
        + new
        + "\n    # ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace(retries + "\n", retries + "\n" + new + "\n")


def test_a_new_return_past_a_blank_line_replaces_the_blocks_last_return():
    """`logger.debug(..)` inside the loop's `if`, a blank line, then `return EpochResult(` spread over lines,
    where the method ends with a one-line `return EpochResult(..)` (which `fit_epoch` has too): that return
    rewritten, not a second one after it. The realistic case it came from, whole."""
    path = REALISTIC / "ae_py_trainer_validate_collect_preds.case"
    case = parse_case(path.read_text(encoding="utf-8"), path.stem)
    assert apply_snippet(case.original, case.snippet, language="python").merged == case.final


def test_a_const_declared_again_after_new_lines_edits_the_files_declaration():
    """New lines, a blank line, `const value = useMemo(` spread over lines, where the file declares `const
    value` next: that declaration edited (kept, the scope declared `value` twice)."""
    original = (
        "export function Provider({ children }) {\n  const setTheme = useCallback((t) => save(t), []);\n\n"
        "  const value = useMemo(() => ({ setTheme }), [setTheme]);\n\n"
        "  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;\n}\n"
    )
    new = (
        "  const toggle = useCallback(() => setTheme('dark'), [setTheme]);\n\n  const value = useMemo(\n"
        "    () => ({ setTheme, toggle }),\n    [setTheme, toggle],\n  );\n"
    )
    snippet = (
        "// ... existing code ...\n  const setTheme = useCallback((t) => save(t), []);\n\n" + new + "// ...\n"
    )
    result = apply_snippet(original, snippet, language="tsx")
    assert result.merged == original.replace(
        "  const value = useMemo(() => ({ setTheme }), [setTheme]);\n", new
    )


def test_a_new_table_entry_whose_ending_copies_the_next_entry_is_never_that_entry_rewritten():
    """A new `{ name: "embedded space", ... wantErr: true },` after the shown entry: its ending is the next
    entry's, and the next entry (`name: "unknown unit"`) was replaced. An anonymous `{` block is the old one
    only when it starts with the same line; here the placement is in doubt."""
    entry = '\t\t{{\n\t\t\tname:    "{0}",\n\t\t\tin:      "{1}",\n\t\t\twantErr: true,\n\t\t}},\n'
    negative, unknown = entry.format("negative", "-5m"), entry.format("unknown unit", "3w")
    original = (
        "func TestParse(t *testing.T) {\n\ttests := []struct{}{\n"
        + negative
        + unknown
        + "\t}\n\trun(tests)\n}\n"
    )
    snippet = (
        "// ... existing code ...\n"
        + negative
        + entry.format("embedded space", "1h 30m")
        + "// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="go")
    assert result.merged in (
        None,
        original.replace(negative, negative + entry.format("embedded space", "1h 30m")),
    )


def test_a_route_rewritten_over_several_lines_is_never_kept_beside_its_old_self():
    """The one-line `router.patch("/:id", ..., async (req, res) => {` spread over lines, its body one level
    deeper: not recognised as that route's rewrite, the merge held the route twice. Refused."""
    original = (
        'router.get("/", async (req, res) => {\n  res.json(await list());\n});\n\n'
        'router.patch("/:id", requireAdmin, async (req, res) => {\n  res.json(await update(req));\n});\n\n'
        "module.exports = router;\n"
    )
    snippet = (
        '// ... existing code ...\nrouter.patch(\n  "/:id",\n  requireAdmin,\n  body("role").isIn(ROLES),\n'
        "  async (req, res) => {\n    res.json(await update(req));\n  },\n);\n\nmodule.exports = router;\n"
    )
    result = apply_snippet(original, snippet, language="javascript")
    assert result.reason == Refusal.AMBIGUOUS_SCOPE and 'router.patch("/:id"' in result.detail


def test_a_markdown_sentence_with_one_value_changed_above_the_anchor_replaces_the_old_one():
    """`Rate limit: 300 requests ...` above `## Endpoints` (a blank line apart) where the file says 100: two
    sentences that differ in one value contradict each other, so the old one goes."""
    original = "# API\n\nAll endpoints need a token.\n\nRate limit: 100 requests per minute.\n\n## Endpoints\n\nList.\n"
    snippet = (
        "# API\n\n<!-- ... -->\n\nRate limit: 300 requests per minute.\n\n## Endpoints\n\n<!-- ... -->\n"
    )
    result = apply_snippet(original, snippet, language="markdown")
    assert result.merged == original.replace("100", "300")


def test_a_markdown_heading_right_before_a_marker_renames_the_section_there():
    """`## Step 5: Load the data` after the last shown paragraph, then a marker, where the file has `## Step
    4: Load the data`: that section renumbered (inserted, the new section would be empty)."""
    original = (
        "## Step 3: Migrate\n\nRun it.\n\nYou should see OK.\n\n## Step 4: Load the data\n\nLoad it.\n\n"
        "## Step 5: Serve\n\nServe it.\n"
    )
    snippet = (
        "<!-- ... -->\n## Step 4: Migrate\n\nRun it.\n\nYou should see OK.\n\n## Step 5: Load the data\n\n"
        "<!-- ... -->\n\n## Step 6: Serve\n\n<!-- ... -->\n"
    )
    result = apply_snippet(original, snippet, language="markdown")
    assert result.merged == original.replace("Step 5", "Step 6").replace("Step 4", "Step 5").replace(
        "Step 3", "Step 4"
    )


# The second reader's probes of those rules (96): the first versions wrote 11 wrong files that the older
# applier had right. Each narrowed rule keeps the older result on these look-alikes.
@pytest.mark.parametrize(
    ("language", "original", "snippet", "final"),
    [
        pytest.param(  # `--out` -> `--output` with its parameter: a rename, not a second option
            "python",
            "import click\n\n\n@click.group()\ndef cli():\n    pass\n\n\n@cli.command()\n"
            '@click.option("--out", "-o", type=click.Path())\ndef export(out):\n    """Export."""\n    write_dump(out)\n',
            '# ... existing code ...\n@click.option("--output", "-o", type=click.Path())\ndef export(output):\n'
            '    """Export."""\n    write_dump(output)\n',
            "import click\n\n\n@click.group()\ndef cli():\n    pass\n\n\n@cli.command()\n"
            '@click.option("--output", "-o", type=click.Path())\ndef export(output):\n    """Export."""\n'
            "    write_dump(output)\n",
            id="a-renamed-flag-with-its-parameter",
        ),
        pytest.param(  # a method renamed, the next one shown whole: the tail reaches out of the new unit
            "python",
            "class Config:\n    def __init__(self, data):\n        self._data = data\n\n    def get_timeout(self):\n"
            '        value = self._data.get("timeout", 30)\n        if value < 0:\n            raise ValueError("t")\n'
            '        return value\n\n    def get_retries(self):\n        return int(self._data.get("retries", 3))\n\n'
            '    def get_name(self):\n        return self._data["name"]\n',
            "class Config:\n    # ... existing code ...\n        self._data = data\n\n    def timeout(self) -> float:\n"
            '        value = float(self._data.get("timeout", 30))\n        if value < 0:\n'
            '            raise ValueError("t")\n        return value\n\n    def get_retries(self):\n'
            '        return int(self._data.get("retries", 3))\n    # ... existing code ...\n',
            "class Config:\n    def __init__(self, data):\n        self._data = data\n\n    def timeout(self) -> float:\n"
            '        value = float(self._data.get("timeout", 30))\n        if value < 0:\n'
            '            raise ValueError("t")\n        return value\n\n    def get_retries(self):\n'
            '        return int(self._data.get("retries", 3))\n\n    def get_name(self):\n        return self._data["name"]\n',
            id="a-tail-out-of-the-new-unit",
        ),
        pytest.param(  # a new section whose sentence differs from the one above in one word: inserted
            "markdown",
            "# Downloads\n\n### Linux\n\nDownload the archive for Linux and unpack it.\n\n### Windows\n\nRun it.\n",
            "<!-- ... -->\n### macOS\n\nDownload the archive for macOS and unpack it.\n\n### Windows\n<!-- ... -->\n",
            "# Downloads\n\n### Linux\n\nDownload the archive for Linux and unpack it.\n\n### macOS\n\n"
            "Download the archive for macOS and unpack it.\n\n### Windows\n\nRun it.\n",
            id="a-new-section-saying-the-same",
        ),
    ],
)
def test_the_fifth_rounds_rules_leave_their_look_alikes_as_they_were(language, original, snippet, final):
    assert apply_snippet(original, snippet, language=language).merged == final


# The rules of the sixth fresh round (`ai_*` to `al_*`), each from a wrong file it wrote.


def test_a_place_that_wins_only_by_a_blank_line_is_no_better_than_the_others():
    """`remaining()` is word for word in both impls; in the second a blank line follows it, in the first
    the impl's `}`. The snippet's blank line after it is no reason to pick the second: refused."""
    method = "    pub fn remaining(&self) -> u64 {\n        self.expires_at - now()\n    }\n"
    original = (
        "impl AccessToken {\n" + method + "}\n\nimpl RefreshToken {\n" + method + "\n"
        "    pub fn rotate(&self) -> Self {\n        Self::issue()\n    }\n}\n"
    )
    snippet = (
        "// ... existing code ...\n"
        + method
        + "\n    pub fn is_expired(&self) -> bool {\n        true\n    }\n// ...\n"
    )
    result = apply_snippet(original, snippet, language="rust")
    assert result.reason == Refusal.AMBIGUOUS_ANCHOR


def test_a_new_docstring_under_the_header_replaces_the_one_there():
    """A one-line docstring rewritten over several lines, the body behind a marker: kept, the function had
    two docstrings (the second a stray string)."""
    original = 'def total(items):\n    """Return the total."""\n    net = sum(items)\n    return net\n\n\ndef tax(x):\n    return x\n'
    new = '    """Return the total of the items.\n\n    Zero for no items.\n    """\n'
    snippet = "# ... existing code ...\ndef total(items):\n" + new + "    # ... existing code ...\n"
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace('    """Return the total."""\n', new)


def test_a_one_line_call_spread_over_lines_is_that_call():
    """`report.file.save(f"...", rows)` on one line, sent as `report.file.save(` / arguments / `)`: the same
    statement (inserted, the file was saved twice)."""
    original = (
        "def build(target, rows):\n    report = Report.create(target)\n"
        '    report.file.save(f"sales-{target}.csv", write_csv(["currency", "revenue"], rows))\n'
        "    return report.pk\n"
    )
    new = (
        '    report.file.save(\n        f"sales-{target}.csv",\n        write_csv(["currency", "status", "revenue"], rows),\n'
        "    )\n"
    )
    snippet = (
        "# ... existing code ...\n    report = Report.create(target)\n"
        + new
        + "    # ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="python")
    assert result.merged == original.replace(
        '    report.file.save(f"sales-{target}.csv", write_csv(["currency", "revenue"], rows))\n', new
    )


def test_a_method_written_in_a_subclass_is_an_override_not_a_move():
    """A new `findMany` in `OrderRepository` where only the base class has one: the base's copy stays (it
    was dropped as the method moved into the subclass)."""
    original = (
        "class Base {\n  async findMany() {\n    return this.all();\n  }\n\n  async findById(id) {\n"
        "    return this.one(id);\n  }\n}\n\nclass OrderRepository extends Base {\n  async findForCustomer(id) {\n"
        "    return this.where(id);\n  }\n}\n"
    )
    new = "  async findMany() {\n    return this.all().filter((o) => !o.deleted);\n  }\n\n"
    snippet = (
        "// ... existing code ...\nclass OrderRepository extends Base {\n"
        + new
        + "  async findForCustomer(id) {\n"
        "// ... existing code ...\n"
    )
    result = apply_snippet(original, snippet, language="javascript")
    assert result.merged == original.replace(
        "class OrderRepository extends Base {\n", "class OrderRepository extends Base {\n" + new
    )


def test_a_markdown_heading_extended_above_new_text_edits_that_heading():
    """`### DELETE /v1/x` -> `### DELETE /v1/x (deprecated)`, then a new warning, then the section's first
    line: the heading edited (inserted, the section had two headings)."""
    original = "## Endpoints\n\n### GET /v1/x\n\nReads x.\n\n### DELETE /v1/x\n\nDeletes x.\n\nReturns 204.\n"
    snippet = (
        "<!-- ... -->\n### DELETE /v1/x (deprecated)\n\n> **Warning**\n> Use archive instead.\n\nDeletes x.\n\n"
        "<!-- ... -->\n"
    )
    result = apply_snippet(original, snippet, language="markdown")
    assert result.merged == original.replace(
        "### DELETE /v1/x\n\nDeletes x.",
        "### DELETE /v1/x (deprecated)\n\n> **Warning**\n> Use archive instead.\n\nDeletes x.",
    )


# The second reader's probes of those rules (66): the first versions wrote 16 wrong files that the older
# applier had right. Each narrowed rule keeps the older result on these look-alikes.
@pytest.mark.parametrize(
    ("language", "original", "snippet", "final"),
    [
        pytest.param(  # another call of the same function, spread over lines: inserted, the next one kept
            "python",
            "import argparse\n\n\ndef build_parser():\n    parser = argparse.ArgumentParser()\n"
            '    parser.add_argument("--input", required=True)\n    parser.add_argument("--output", default="-")\n'
            "    return parser\n",
            'def build_parser():\n    parser = argparse.ArgumentParser()\n    parser.add_argument("--input", required=True)\n'
            '    parser.add_argument(\n        "--format",\n        choices=["json", "csv"],\n    )\n'
            "    # ... existing code ...\n",
            "import argparse\n\n\ndef build_parser():\n    parser = argparse.ArgumentParser()\n"
            '    parser.add_argument("--input", required=True)\n    parser.add_argument(\n        "--format",\n'
            '        choices=["json", "csv"],\n    )\n    parser.add_argument("--output", default="-")\n    return parser\n',
            id="another-call-of-the-same-function",
        ),
        pytest.param(  # a method moved up in its class whose header the snippet also edits: moved, once
            "python",
            "import html\n\n\nclass Report:\n    def title(self):\n        return self.name.title()\n\n"
            '    def render(self):\n        return f"<h1>{self._escape(self.title())}</h1>"\n\n'
            "    def _escape(self, text):\n        return html.escape(text)\n",
            "class Report(Renderable):\n    def title(self):\n        return self.name.title()\n\n"
            "    def _escape(self, text):\n        return html.escape(text)\n\n    def render(self):\n# ... existing code ...\n",
            "import html\n\n\nclass Report(Renderable):\n    def title(self):\n        return self.name.title()\n\n"
            "    def _escape(self, text):\n        return html.escape(text)\n\n    def render(self):\n"
            '        return f"<h1>{self._escape(self.title())}</h1>"\n',
            id="a-move-in-a-class-whose-header-changed",
        ),
    ],
)
def test_the_sixth_rounds_rules_leave_their_look_alikes_as_they_were(language, original, snippet, final):
    assert apply_snippet(original, snippet, language=language).merged == final
