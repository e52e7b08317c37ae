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
const want = Number(process.argv[3] || ops);
if (ops !== want) {
  console.error(`openapi_validate: ${ops} operations, route table has ${want}`);
  process.exit(1);
}
console.log(`openapi_validate: valid OpenAPI ${v.version}, ${ops} operations`);
