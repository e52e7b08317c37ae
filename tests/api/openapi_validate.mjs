// Validates the OpenAPI document aisbxd generates from its route table with
// a real OpenAPI 3.1 schema validator (npm @seriousme/openapi-schema-validator,
// installed by tools/install-deps.sh from package.json).
// usage: node openapi_validate.mjs FILE
import { readFileSync } from "node:fs";
let Validator;
try {
  ({ Validator } = await import("@seriousme/openapi-schema-validator"));
} catch (e) {
  console.error("openapi_validate: @seriousme/openapi-schema-validator is not installed (run tools/install-deps.sh)");
  process.exit(77);
}
const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
const v = new Validator();
const res = await v.validate(doc);
if (!res.valid) {
  console.error(JSON.stringify(res.errors, null, 2));
  process.exit(1);
}
if (v.version !== "3.1") {
  console.error("openapi_validate: expected an OpenAPI 3.1 document, got " + v.version);
  process.exit(1);
}
let ops = 0;
for (const item of Object.values(doc.paths))
  for (const [m, op] of Object.entries(item))
    if (["get", "put", "post", "delete", "patch"].includes(m)) {
      ops++;
      if (!op["x-permission"]) {
        console.error("operation without x-permission: " + m + " " + op.operationId);
        process.exit(1);
      }
    }
// Request-body schemas (src/server/schemas.c): each example must be valid
// under its own schema (ajv, JSON Schema 2020-12; a dependency of the
// validator above). test_holes sends the same examples to the handlers.
let Ajv2020;
try {
  Ajv2020 = (await import("ajv/dist/2020.js")).default;
} catch (e) {
  console.error("openapi_validate: ajv (a dependency of the validator) is missing");
  process.exit(77);
}
const ajv = new Ajv2020({ strict: false });
let examples = 0;
for (const [path, item] of Object.entries(doc.paths))
  for (const [m, op] of Object.entries(item)) {
    const sch = op?.requestBody?.content?.["application/json"]?.schema;
    if (!sch || !sch.examples) continue;
    const check = ajv.compile(sch);
    for (const ex of sch.examples) {
      examples++;
      if (!check(ex)) {
        console.error(`example of ${m} ${path} invalid under its schema: ` +
                      JSON.stringify(ex) + " " + JSON.stringify(check.errors));
        process.exit(1);
      }
    }
  }
if (examples === 0) {
  console.error("openapi_validate: no request-body examples");
  process.exit(1);
}
const want = Number(process.argv[3] || ops);
if (ops !== want) {
  console.error(`openapi_validate: ${ops} operations, route table has ${want}`);
  process.exit(1);
}
console.log(`openapi_validate: valid OpenAPI ${v.version}, ${ops} operations, ${examples} request examples valid`);
