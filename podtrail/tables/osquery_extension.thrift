// The osquery extension protocol, as podtrail speaks it over a UNIX socket (binary
// protocol, buffered transport).
//
// Written for podtrail from the protocol's wire facts only: service and method names, field
// ids and field types, as the `osquery` PyPI package's generated thrift_spec tuples carry
// them (osquery.extensions.ttypes, .Extension, .ExtensionManager). Struct and typedef names
// never travel on the wire; method names, field ids and types do, and must stay as they are.
//
// Regenerate with Debian's thrift-compiler (0.17), then commit both:
//   make thrift    (scripts/thrift-gen.sh)
// tests/osquery/test_thrift_idl.py regenerates into a temporary folder and fails when the
// committed code differs.

namespace py podtrail.tables.osquery_thrift

// Status codes osqueryd understands (ExtensionStatus.code).
enum ExtensionCode {
  EXT_SUCCESS = 0,
  EXT_FAILED = 1,
  EXT_FATAL = 2,
}

// One plugin's answer: a list of rows (tables) or of key/value routes (columns).
typedef map<string, string> Row
typedef list<Row> Rows
// registry name ("table", "config", ...) -> plugin name -> its routes (a table's columns).
typedef map<string, map<string, Rows>> Registry

struct InternalOptionInfo {
  1: string value,
  2: string default_value,
  3: string type,
}

struct InternalExtensionInfo {
  1: string name,
  2: string version,
  3: string sdk_version,
  4: string min_sdk_version,
}

struct ExtensionStatus {
  1: i32 code,
  2: string message,
  3: i64 uuid,   // set by registerExtension: the extension serves at <manager socket>.<uuid>
}

struct ExtensionResponse {
  1: ExtensionStatus status,
  2: Rows response,
}

// What an extension serves (osqueryd is the client).
service Extension {
  ExtensionStatus ping(),
  ExtensionResponse call(1: string registry, 2: string item, 3: Row request),
  void shutdown(),
}

// What osqueryd serves at its extension manager socket (extensions are the clients).
service ExtensionManager extends Extension {
  map<i64, InternalExtensionInfo> extensions(),
  map<string, InternalOptionInfo> options(),
  ExtensionStatus registerExtension(1: InternalExtensionInfo info, 2: Registry registry),
  ExtensionStatus deregisterExtension(1: i64 uuid),
  ExtensionResponse query(1: string sql),
  ExtensionResponse getQueryColumns(1: string sql),
}
