// Validates the running plumed against docs/api/openapi.json: every documented path and method is
// routed (no 404/405 with real object ids), answers with a status the document lists for it, and
// the main endpoints' bodies carry the required properties, with the documented types and
// Content-Type.
#include <algorithm>
#include <fstream>
#include <sstream>

#include "e2e.h"

namespace plume::test {
namespace {

json load_openapi() {
  std::ifstream in(std::string(PLUME_SOURCE_DIR) + "/docs/api/openapi.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str(), nullptr, false);
}

const json& resolve(const json& doc, const json& node) {
  if (node.is_object() && node.contains("$ref")) {
    std::string ref = node["$ref"].get<std::string>();  // "#/components/schemas/X"
    return resolve(doc, doc.at(json::json_pointer(ref.substr(1))));
  }
  return node;
}

// Checks `value` against the subset of JSON Schema the document uses: type, required, properties,
// items, allOf, enum. Appends "where: what" for each violation.
void check_schema(const json& doc, const json& schema_in, const json& value, const std::string& where,
                  std::vector<std::string>& errors) {
  const json& schema = resolve(doc, schema_in);
  if (schema.contains("allOf")) {
    for (const auto& part : schema["allOf"]) check_schema(doc, part, value, where, errors);
    return;
  }
  if (schema.contains("oneOf")) return;  // unions (memory as number or string): not checked here
  std::string type = schema.value("type", std::string());
  auto bad = [&](const std::string& what) { errors.push_back(where + ": " + what + " (got " + value.dump() + ")"); };
  if (type == "object" && !value.is_object()) return bad("not an object");
  if (type == "array" && !value.is_array()) return bad("not an array");
  if (type == "string" && !value.is_string()) return bad("not a string");
  if (type == "integer" && !value.is_number_integer()) return bad("not an integer");
  if (type == "boolean" && !value.is_boolean()) return bad("not a boolean");
  if (schema.contains("enum") && std::find(schema["enum"].begin(), schema["enum"].end(), value) == schema["enum"].end())
    return bad("not one of " + schema["enum"].dump());
  if (value.is_object()) {
    if (schema.contains("required"))
      for (const auto& key : schema["required"])
        if (!value.contains(key.get<std::string>())) errors.push_back(where + ": missing required \"" + key.get<std::string>() + "\"");
    if (schema.contains("properties"))
      for (const auto& [key, sub] : schema["properties"].items())
        if (value.contains(key)) check_schema(doc, sub, value[key], where + "." + key, errors);
  }
  if (value.is_array() && schema.contains("items"))
    for (size_t i = 0; i < value.size(); ++i)
      check_schema(doc, schema["items"], value[i], where + "[" + std::to_string(i) + "]", errors);
}

class ApiContract : public ::testing::Test {
 protected:
  void SetUp() override {
    PLUME_SKIP_UNLESS_ROOT();
    doc_ = load_openapi();
    ASSERT_TRUE(doc_.is_object()) << "docs/api/openapi.json does not parse";
    ASSERT_TRUE(plumed_.start());
  }
  json doc_;
  Plumed plumed_;
};

TEST_F(ApiContract, DocumentIsWellFormed) {
  EXPECT_EQ(doc_.value("openapi", std::string()).substr(0, 2), "3.");
  ASSERT_TRUE(doc_["components"]["securitySchemes"].contains("bearer"));
  for (const char* s : {"Tenant", "TenantSpec", "Image", "ImageSpec", "RunSpec", "Worker", "TenantStats", "Error"})
    EXPECT_TRUE(doc_["components"]["schemas"].contains(s)) << s;
  // Every $ref resolves.
  std::vector<const json*> stack = {&doc_};
  while (!stack.empty()) {
    const json* n = stack.back();
    stack.pop_back();
    if (n->is_object()) {
      if (n->contains("$ref")) {
        std::string ref = (*n)["$ref"].get<std::string>();
        EXPECT_TRUE(doc_.contains(json::json_pointer(ref.substr(1)))) << "dangling " << ref;
      }
      for (const auto& [k, v] : n->items()) stack.push_back(&v);
    } else if (n->is_array()) {
      for (const auto& v : *n) stack.push_back(&v);
    }
  }
}

TEST_F(ApiContract, EveryDocumentedOperationIsRoutedAndAnswersPerSchema) {
  // Real objects for the path parameters.
  std::string tenant_token = add_tenant(plumed_, "acme");
  add_tenant(plumed_, "doomed");
  TempDir images;
  std::string rootfs = images.path() + "/rootfs";
  ASSERT_EQ(make_busybox_rootfs(rootfs), "");
  json img = {{"name", "doomed-img"}, {"fwp", {{"binary", PLUME_ECHO_APP}}}};  // a pool to resize
  ASSERT_EQ(plumed_.admin("POST", "/v1/images", img.dump()).status, 201);
  json worker = run_worker(plumed_, tenant_token, {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(worker.contains("id"));
  std::string id = worker["id"];
  // A featherweight instance for the endpoint that needs one (messages), of an image of its own.
  json talk = {{"name", "talk"}, {"fwp", {{"binary", PLUME_ECHO_APP}}}};
  ASSERT_EQ(plumed_.admin("POST", "/v1/images", talk.dump()).status, 201);
  json instance = run_worker(plumed_, tenant_token, {{"fwp", true}, {"image", "talk"}, {"input", "hi"}});
  ASSERT_TRUE(instance.contains("id"));
  const std::string instance_id = instance["id"];

  auto substitute = [&](std::string path) {
    auto replace = [&](const std::string& from, const std::string& to) {
      if (auto pos = path.find(from); pos != std::string::npos) path.replace(pos, from.size(), to);
    };
    replace("{id}", path.ends_with("/messages") ? instance_id : id);
    if (path.rfind("/v1/tenants/", 0) == 0) replace("{name}", "doomed");
    if (path.rfind("/v1/images/", 0) == 0) replace("{name}", "doomed-img");
    return path;
  };
  auto body_for = [&](const std::string& path, const std::string& method) -> json {
    if (method == "patch" && path == "/v1/tenants/{name}") return {{"limits", {{"max_workers", 8}}}};
    if (method == "patch" && path == "/v1/images/{name}") return {{"fwp", {{"pool_size", 1}}}};
    if (method == "put" && path == "/v1/images/{name}") return {{"fwp", {{"binary", PLUME_ECHO_APP}}}};
    if (method != "post") return nullptr;
    if (path == "/v1/tenants") return {{"name", "fresh"}, {"token", "fresh-token-123456"}};
    if (path == "/v1/images") return {{"name", "fresh-img"}, {"rootfs", rootfs}};
    if (path == "/v1/workers") return {{"tenant", "acme"}, {"argv", {"/bin/true"}}};
    if (path == "/v1/workers/{id}/signal") return {{"signal", "KILL"}};
    if (path == "/v1/workers/{id}/messages") return {{"messages", {"x"}}, {"replies", 1}, {"timeout_ms", 10000}};
    return json::object();
  };
  auto query_for = [&](const std::string& path) -> std::string {
    if (path == "/v1/workers/{id}/wait") return "?timeout_ms=50";
    if (path == "/v1/workers/{id}/logs") return "?stream=stdout";
    return "";
  };

  // Order: reads first, then the signal, then deletes (the worker's after it has ended).
  struct Op {
    int rank;
    std::string path, method;
  };
  std::vector<Op> ops;
  for (const auto& [path, item] : doc_["paths"].items())
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters") continue;
      int rank = method == "delete" ? 2 : (path.find("/signal") != std::string::npos ? 1 : 0);
      ops.push_back({rank, path, method});
    }
  std::stable_sort(ops.begin(), ops.end(), [](const Op& a, const Op& b) { return a.rank < b.rank; });
  ASSERT_GE(ops.size(), 16u);

  for (const auto& op : ops) {
    SCOPED_TRACE(op.method + " " + op.path);
    std::string method = op.method;
    std::transform(method.begin(), method.end(), method.begin(), ::toupper);
    if (op.path == "/v1/workers/{id}" && op.method == "delete") {
      (void)wait_worker(plumed_, tenant_token, id);  // ended by the KILL sent earlier
    }
    json body = body_for(op.path, op.method);
    auto r = plumed_.admin(method, substitute(op.path) + query_for(op.path), body.is_null() ? "" : body.dump());
    ASSERT_NE(r.status, 0) << r.body;
    EXPECT_NE(r.status, 404) << show(r);
    EXPECT_NE(r.status, 405) << show(r);
    const json& responses = doc_["paths"][op.path][op.method]["responses"];
    std::string code = std::to_string(r.status);
    ASSERT_TRUE(responses.contains(code)) << "status " << code << " is not documented: " << show(r);
    EXPECT_GE(r.status, 200) << show(r);
    EXPECT_LT(r.status, 300) << show(r);
    const json& resp = resolve(doc_, responses[code]);
    if (!resp.contains("content")) {
      EXPECT_TRUE(r.body.empty()) << "undocumented body: " << r.body;
      continue;
    }
    std::string media = resp["content"].begin().key();
    std::string ctype = r.header("content-type");
    EXPECT_EQ(ctype.substr(0, ctype.find(';')), media.substr(0, media.find(';'))) << "Content-Type " << ctype;
    if (media == "application/json") {
      json value = json_of(r);
      ASSERT_FALSE(value.is_discarded()) << "not JSON: " << r.body;
      std::vector<std::string> errors;
      check_schema(doc_, resp["content"][media]["schema"], value, op.path, errors);
      for (const auto& e : errors) ADD_FAILURE() << e;
    }
  }
}

TEST_F(ApiContract, ErrorBodiesFollowTheErrorSchema) {
  std::vector<std::string> errors;
  const json& schema = doc_["components"]["schemas"]["Error"];
  for (const auto& [method, path, token] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"GET", "/v1/tenants", ""},
           {"GET", "/v1/no-such-thing", plumed_.admin_token()},
           {"PUT", "/v1/tenants", plumed_.admin_token()},
           {"GET", "/v1/workers/w-00000000", plumed_.admin_token()}}) {
    auto r = plumed_.request(method, path, token);
    SCOPED_TRACE(method + " " + path);
    EXPECT_GE(r.status, 400) << show(r);
    EXPECT_EQ(r.header("content-type").substr(0, 16), "application/json");
    json value = json_of(r);
    ASSERT_FALSE(value.is_discarded()) << r.body;
    check_schema(doc_, schema, value, path, errors);
  }
  for (const auto& e : errors) ADD_FAILURE() << e;
}

}  // namespace
}  // namespace plume::test
