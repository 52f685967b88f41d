// What Continue itself does with stage 5's files, run with Continue's own npm
// packages (installed by `make test-npm`, pinned in tests/npm/package.json):
//
//   node continue_tools.cjs validate CONFIG.yaml
//       parseConfigYaml + validateConfigYaml from @continuedev/config-yaml; prints JSON
//       {errors, dropped}: dropped = keys in the file that the schema did not keep.
//   node continue_tools.cjs rule RULES.md
//       the file read as VS Code's Continue reads it, then markdownToRule from
//       @continuedev/config-yaml: prints JSON {rule, alwaysApply}; the rule text is what
//       Continue appends to the system message.
//   node continue_tools.cjs render   (stdin: {"template": ..., "vars": {...}})
//       renders an autocomplete template with Handlebars, as Continue's
//       core/autocomplete/templating/index.ts renderStringTemplate does; prints JSON {prompt}.
const fs = require("fs");
const YAML = require("yaml");

function droppedKeys(raw, parsed, path = "") {
  if (raw === null || typeof raw !== "object") return [];
  if (Array.isArray(raw)) return raw.flatMap((item, i) => droppedKeys(item, (parsed || [])[i], `${path}[${i}]`));
  return Object.keys(raw).flatMap((key) =>
    parsed && key in parsed ? droppedKeys(raw[key], parsed[key], `${path}.${key}`) : [`${path}.${key}`]);
}

const [cmd, file] = process.argv.slice(2);
if (cmd === "validate") {
  const { parseConfigYaml, validateConfigYaml } = require("@continuedev/config-yaml");
  const text = fs.readFileSync(file, "utf8");
  let parsed;
  try {
    parsed = parseConfigYaml(text);
  } catch (err) {
    console.log(JSON.stringify({ errors: [String(err.message || err)], dropped: [] }));
    process.exit(0);
  }
  const errors = validateConfigYaml(parsed).map((e) => `${e.fatal ? "fatal" : "warning"}: ${e.message}`);
  console.log(JSON.stringify({ errors, dropped: droppedKeys(YAML.parse(text), parsed) }));
} else if (cmd === "rule") {
  const { markdownToRule } = require("@continuedev/config-yaml");
  // decoded as VS Code's readFile (extensions/vscode/src/VsCodeIde.ts) does: TextDecoder drops a BOM
  const text = new TextDecoder().decode(fs.readFileSync(file));
  const rule = markdownToRule(text, { uriType: "file", fileUri: file });
  console.log(JSON.stringify({ rule: rule.rule, alwaysApply: rule.alwaysApply }));
} else if (cmd === "render") {
  const Handlebars = require("handlebars");
  const { template, vars } = JSON.parse(fs.readFileSync(0, "utf8"));
  console.log(JSON.stringify({ prompt: Handlebars.compile(template)(vars) }));
} else {
  console.error("usage: continue_tools.cjs validate FILE | render < {template, vars}");
  process.exit(2);
}
