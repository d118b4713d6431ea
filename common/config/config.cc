#include "common/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config/validate.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"
#include "common/util/suggest.h"

namespace cmdistill::config {
namespace {

namespace pb = google::protobuf;

constexpr size_t kMaxReportedErrors = 50;

// Collects problems and remembers where each field's value came from.
struct Context {
  std::string source;  // "run.yaml" or "--set a.b"
  std::vector<std::string> errors;
  std::map<std::string, std::string>
      origin;  // key path -> "file:line:col" / "--set ..."

  void Error(const std::string& where, const std::string& path,
             const std::string& what) {
    errors.push_back(absl::StrCat(
        where, ": ", path.empty() ? "(top level)" : path, ": ", what));
  }
};

std::string Where(const Context& ctx, const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return ctx.source;
  return absl::StrCat(ctx.source, ":", m.line + 1, ":", m.column + 1);
}

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

std::string CamelToUpperSnake(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && std::isupper(static_cast<unsigned char>(s[i])))
      out.push_back('_');
    out.push_back(
        static_cast<char>(std::toupper(static_cast<unsigned char>(s[i]))));
  }
  return out;
}

std::string Suggest(const pb::Descriptor& d, const std::string& key) {
  std::vector<std::string> names;
  for (int i = 0; i < d.field_count(); ++i) names.push_back(d.field(i)->name());
  const std::string best =
      ClosestMatch(key, names, std::max<size_t>(2, key.size() / 3));
  if (best.empty())
    return absl::StrCat(" (known keys: ", absl::StrJoin(names, ", "), ")");
  return absl::StrCat(" (did you mean '", best, "'?)");
}

std::string TypeName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return absl::StrCat("'", n.Scalar(), "'");
  }
}

// Parses one scalar into a field (repeated: appended). Returns false with
// *error set.
bool SetScalar(const pb::FieldDescriptor& f, const YAML::Node& node,
               pb::Message* msg, std::string* error) {
  const pb::Reflection* r = msg->GetReflection();
  const bool rep = f.is_repeated();
  if (node.IsNull() && f.cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
    // `key:` with nothing after it: for strings, an explicit empty value.
    rep ? r->AddString(msg, &f, "") : r->SetString(msg, &f, "");
    return true;
  }
  if (!node.IsScalar()) {
    *error = absl::StrCat("expected a single value, got ", TypeName(node));
    return false;
  }
  const std::string text = node.Scalar();
  const std::string t(absl::StripAsciiWhitespace(text));
  switch (f.cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v = 0;
      if (!absl::SimpleAtoi(t, &v)) {
        *error = absl::StrCat("expected an integer, got '", text, "'");
        return false;
      }
      if (f.cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32) {
        if (v < std::numeric_limits<int32_t>::min() ||
            v > std::numeric_limits<int32_t>::max()) {
          *error = absl::StrCat("integer ", v, " does not fit in 32 bits");
          return false;
        }
        rep ? r->AddInt32(msg, &f, static_cast<int32_t>(v))
            : r->SetInt32(msg, &f, static_cast<int32_t>(v));
      } else {
        rep ? r->AddInt64(msg, &f, v) : r->SetInt64(msg, &f, v);
      }
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v = 0;
      if (!t.empty() && t[0] == '-') {
        *error =
            absl::StrCat("expected a non-negative integer, got '", text, "'");
        return false;
      }
      if (!absl::SimpleAtoi(t, &v)) {
        *error =
            absl::StrCat("expected a non-negative integer, got '", text, "'");
        return false;
      }
      if (f.cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT32) {
        if (v > std::numeric_limits<uint32_t>::max()) {
          *error = absl::StrCat("integer ", v, " does not fit in 32 bits");
          return false;
        }
        rep ? r->AddUInt32(msg, &f, static_cast<uint32_t>(v))
            : r->SetUInt32(msg, &f, static_cast<uint32_t>(v));
      } else {
        rep ? r->AddUInt64(msg, &f, v) : r->SetUInt64(msg, &f, v);
      }
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      double v = 0;
      if (!absl::SimpleAtod(t, &v) || !std::isfinite(v)) {
        *error = absl::StrCat("expected a finite number, got '", text, "'");
        return false;
      }
      if (f.cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT) {
        if (std::fabs(v) > std::numeric_limits<float>::max()) {
          *error =
              absl::StrCat("number ", text, " is out of range for a float");
          return false;
        }
        rep ? r->AddFloat(msg, &f, static_cast<float>(v))
            : r->SetFloat(msg, &f, static_cast<float>(v));
      } else {
        rep ? r->AddDouble(msg, &f, v) : r->SetDouble(msg, &f, v);
      }
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      const std::string l = absl::AsciiStrToLower(t);
      if (l != "true" && l != "false") {
        *error = absl::StrCat("expected true or false, got '", text, "'");
        return false;
      }
      rep ? r->AddBool(msg, &f, l == "true") : r->SetBool(msg, &f, l == "true");
      return true;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING:
      rep ? r->AddString(msg, &f, text) : r->SetString(msg, &f, text);
      return true;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumDescriptor* e = f.enum_type();
      std::vector<std::string> allowed;
      for (int i = 0; i < e->value_count(); ++i) {
        const pb::EnumValueDescriptor* v = e->value(i);
        if (v->number() == 0)
          continue;  // *_UNSPECIFIED is never written by hand
        const std::string shortname = EnumShortName(*v);
        if (shortname == absl::AsciiStrToLower(t)) {
          rep ? r->AddEnum(msg, &f, v) : r->SetEnum(msg, &f, v);
          return true;
        }
        allowed.push_back(shortname);
      }
      *error = absl::StrCat("'", text,
                            "' is not one of: ", absl::StrJoin(allowed, ", "));
      return false;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  *error = "unsupported field type";
  return false;
}

void ApplyMessage(const YAML::Node& node, pb::Message* msg,
                  const std::string& path, Context* ctx);

// Applies `node` to field `f` of `msg`; `path` is the field's own key path.
void ApplyField(const pb::FieldDescriptor& f, const YAML::Node& node,
                pb::Message* msg, const std::string& path, Context* ctx) {
  const pb::Reflection* r = msg->GetReflection();
  const std::string where = Where(*ctx, node);
  if (f.is_repeated()) {
    if (!node.IsNull() && !node.IsSequence()) {
      ctx->Error(where, path,
                 absl::StrCat("expected a list, got ", TypeName(node)));
      return;
    }
    r->ClearField(msg,
                  &f);  // a list replaces the default, it does not extend it
    ctx->origin[path] = where;
    if (node.IsNull()) return;
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node item = node[i];
      const std::string item_path = absl::StrCat(path, "[", i, "]");
      if (f.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        ApplyMessage(item, r->AddMessage(msg, &f), item_path, ctx);
      } else {
        std::string error;
        if (!SetScalar(f, item, msg, &error))
          ctx->Error(Where(*ctx, item), item_path, error);
      }
    }
    return;
  }
  if (f.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
    ApplyMessage(node, r->MutableMessage(msg, &f), path, ctx);
    return;
  }
  if (node.IsNull() && f.cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING) {
    ctx->Error(where, path, "has no value");
    return;
  }
  std::string error;
  if (!SetScalar(f, node, msg, &error)) {
    ctx->Error(where, path, error);
    return;
  }
  ctx->origin[path] = where;
}

void ApplyMessage(const YAML::Node& node, pb::Message* msg,
                  const std::string& path, Context* ctx) {
  if (node.IsNull()) return;  // `student:` with nothing under it
  if (!node.IsMap()) {
    ctx->Error(Where(*ctx, node), path,
               absl::StrCat("expected a mapping, got ", TypeName(node)));
    return;
  }
  const pb::Descriptor* d = msg->GetDescriptor();
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      ctx->Error(Where(*ctx, key), path, "keys must be plain names");
      continue;
    }
    const std::string name = key.Scalar();
    const std::string key_path = Join(path, name);
    const pb::FieldDescriptor* f = d->FindFieldByName(name);
    if (f == nullptr) {
      ctx->Error(Where(*ctx, key), key_path,
                 absl::StrCat("unknown key", Suggest(*d, name)));
      continue;
    }
    ApplyField(*f, it->second, msg, key_path, ctx);
  }
}

void ApplyDefaults(pb::Message* msg, const std::string& path, Context* ctx) {
  const pb::Descriptor* d = msg->GetDescriptor();
  const pb::Reflection* r = msg->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const std::string p = Join(path, f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
        !f->is_repeated()) {
      ApplyDefaults(r->MutableMessage(msg, f), p, ctx);
      continue;
    }
    const v1::FieldSpec& spec = f->options().GetExtension(v1::spec);
    if (spec.default_value().empty()) continue;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING &&
        !f->is_repeated()) {
      r->SetString(msg, f,
                   spec.default_value());  // verbatim: a template is not YAML
    } else {
      ApplyField(*f, YAML::Load(spec.default_value()), msg, p, ctx);
    }
    ctx->origin[p] = "default";
  }
}

std::string OriginOf(const Context& ctx, const std::string& path) {
  // A field set as part of a list or a parent reports the closest recorded
  // ancestor.
  std::string p = path;
  for (;;) {
    auto it = ctx.origin.find(p);
    if (it != ctx.origin.end()) return it->second;
    const size_t dot = p.rfind('.');
    if (dot == std::string::npos) return "default";
    p = p.substr(0, dot);
  }
}

void CheckRanges(const pb::Message& msg, const std::string& path,
                 Context* ctx) {
  const pb::Descriptor* d = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const std::string p = Join(path, f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(msg, f); ++j) {
          CheckRanges(r->GetRepeatedMessage(msg, f, j),
                      absl::StrCat(p, "[", j, "]"), ctx);
        }
      } else {
        CheckRanges(r->GetMessage(msg, f), p, ctx);
      }
      continue;
    }
    if (f->is_repeated()) continue;
    const v1::FieldSpec& spec = f->options().GetExtension(v1::spec);
    const std::string where = OriginOf(*ctx, p);
    if (spec.required()) {
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING &&
          r->GetString(msg, f).empty()) {
        ctx->Error(where, p, "is required and must not be empty");
      }
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM &&
          r->GetEnumValue(msg, f) == 0) {
        ctx->Error(where, p, "is required");
      }
    }
    if (!spec.has_min() && !spec.has_max()) continue;
    double v = 0;
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        v = r->GetInt32(msg, f);
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        v = static_cast<double>(r->GetInt64(msg, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        v = r->GetUInt32(msg, f);
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        v = static_cast<double>(r->GetUInt64(msg, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        v = r->GetFloat(msg, f);
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        v = r->GetDouble(msg, f);
        break;
      default:
        continue;
    }
    const bool low = spec.has_min() &&
                     (spec.min_exclusive() ? v <= spec.min() : v < spec.min());
    const bool high = spec.has_max() &&
                      (spec.max_exclusive() ? v >= spec.max() : v > spec.max());
    if (low || high) {
      std::string range = absl::StrCat(
          spec.has_min() ? (spec.min_exclusive() ? "(" : "[") : "(",
          spec.has_min() ? absl::StrCat(spec.min()) : "-inf", ", ",
          spec.has_max() ? absl::StrCat(spec.max()) : "inf",
          spec.has_max() ? (spec.max_exclusive() ? ")" : "]") : ")");
      ctx->Error(where, p,
                 absl::StrCat("value ", v, " is out of range ", range));
    }
  }
}

absl::Status ApplyOverride(const std::string& assignment, RunConfig* config,
                           Context* ctx) {
  const size_t eq = assignment.find('=');
  const std::string source = absl::StrCat("--set ", assignment.substr(0, eq));
  if (eq == std::string::npos || eq == 0) {
    ctx->Error(absl::StrCat("--set ", assignment), "",
               "expected key.path=value");
    return absl::OkStatus();
  }
  const std::string path = assignment.substr(0, eq);
  const std::string value = assignment.substr(eq + 1);
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  pb::Message* msg = config;
  std::string done;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::Descriptor* d = msg->GetDescriptor();
    const pb::FieldDescriptor* f = d->FindFieldByName(parts[i]);
    const std::string p = Join(done, parts[i]);
    if (f == nullptr) {
      ctx->Error(source, p, absl::StrCat("unknown key", Suggest(*d, parts[i])));
      return absl::OkStatus();
    }
    if (i + 1 < parts.size()) {
      if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE ||
          f->is_repeated()) {
        ctx->Error(source, p, "is not a section: cannot set a key below it");
        return absl::OkStatus();
      }
      msg = msg->GetReflection()->MutableMessage(msg, f);
      done = p;
      continue;
    }
    YAML::Node node;
    // A string field takes the text verbatim ("Q: {question}" is not YAML),
    // unless quoted.
    const bool verbatim =
        f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING &&
        !f->is_repeated() &&
        (value.empty() || (value[0] != '"' && value[0] != '\''));
    try {
      node = verbatim ? YAML::Node(value) : YAML::Load(value);
    } catch (const YAML::Exception& e) {
      ctx->Error(source, p, absl::StrCat("value is not valid YAML: ", e.msg));
      return absl::OkStatus();
    }
    Context local{source, {}, {}};
    ApplyField(*f, node, msg, p, &local);
    for (auto& e : local.errors) ctx->errors.push_back(std::move(e));
    for (auto& [k, v] : local.origin) ctx->origin[k] = source;
  }
  return absl::OkStatus();
}

absl::Status Finish(Context* ctx) {
  if (ctx->errors.empty()) return absl::OkStatus();
  std::vector<std::string> shown(
      ctx->errors.begin(),
      ctx->errors.begin() + std::min(ctx->errors.size(), kMaxReportedErrors));
  std::string msg = absl::StrCat("invalid configuration (", ctx->errors.size(),
                                 " problem", ctx->errors.size() == 1 ? "" : "s",
                                 "):\n  ", absl::StrJoin(shown, "\n  "));
  return absl::InvalidArgumentError(msg);
}

std::string FormatDouble(double v, int max_digits) {
  char buf[64];
  for (int prec = 1; prec <= max_digits; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*g", prec, v);
    if (max_digits <= 9 ? static_cast<float>(std::strtod(buf, nullptr)) ==
                              static_cast<float>(v)
                        : std::strtod(buf, nullptr) == v) {
      break;
    }
  }
  std::string s = buf;
  // Keep floats recognisable as numbers with a fractional part.
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string ScalarText(const pb::Message& msg, const pb::FieldDescriptor& f,
                       int index) {
  const pb::Reflection* r = msg.GetReflection();
  const bool rep = index >= 0;
  switch (f.cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(rep ? r->GetRepeatedInt32(msg, &f, index)
                              : r->GetInt32(msg, &f));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(rep ? r->GetRepeatedInt64(msg, &f, index)
                              : r->GetInt64(msg, &f));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(rep ? r->GetRepeatedUInt32(msg, &f, index)
                              : r->GetUInt32(msg, &f));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(rep ? r->GetRepeatedUInt64(msg, &f, index)
                              : r->GetUInt64(msg, &f));
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return FormatDouble(
          rep ? r->GetRepeatedDouble(msg, &f, index) : r->GetDouble(msg, &f),
          17);
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return FormatDouble(
          rep ? r->GetRepeatedFloat(msg, &f, index) : r->GetFloat(msg, &f), 9);
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return (rep ? r->GetRepeatedBool(msg, &f, index) : r->GetBool(msg, &f))
                 ? "true"
                 : "false";
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumValueDescriptor* v =
          rep ? r->GetRepeatedEnum(msg, &f, index) : r->GetEnum(msg, &f);
      return v->number() == 0 ? "unspecified" : EnumShortName(*v);
    }
    default:
      return "";
  }
}

void Emit(YAML::Emitter& out, const pb::Message& msg) {
  const pb::Descriptor* d = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  out << YAML::BeginMap;
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    out << YAML::Key << f->name() << YAML::Value;
    const bool is_string = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING;
    if (f->is_repeated()) {
      const int n = r->FieldSize(msg, f);
      if (n == 0) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        continue;
      }
      out << YAML::BeginSeq;
      for (int j = 0; j < n; ++j) {
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          Emit(out, r->GetRepeatedMessage(msg, f, j));
        } else if (is_string) {
          out << YAML::DoubleQuoted << r->GetRepeatedString(msg, f, j);
        } else {
          out << ScalarText(msg, *f, j);
        }
      }
      out << YAML::EndSeq;
    } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      Emit(out, r->GetMessage(msg, f));
    } else if (is_string) {
      out << YAML::DoubleQuoted << r->GetString(msg, f);
    } else {
      out << ScalarText(msg, *f, -1);
    }
  }
  out << YAML::EndMap;
}

absl::StatusOr<RunConfig> Load(const std::string& yaml,
                               const std::string& source_name,
                               const std::vector<std::string>& overrides) {
  RunConfig config;
  Context ctx{source_name, {}, {}};
  ApplyDefaults(&config, "", &ctx);
  if (!ctx.errors.empty()) {
    return absl::InternalError(
        absl::StrCat("schema defaults are broken: ", ctx.errors[0]));
  }
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", e.mark.line + 1, ":", e.mark.column + 1,
                     ": YAML syntax error: ", e.msg));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": YAML error: ", e.msg));
  }
  try {
    ApplyMessage(root, &config, "", &ctx);
    for (const std::string& o : overrides) {
      (void)ApplyOverride(o, &config, &ctx);
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": YAML error: ", e.msg));
  }
  CheckRanges(config, "", &ctx);
  std::vector<CrossFieldError> cross;
  CheckCrossFieldRules(config, &cross);
  for (const auto& e : cross)
    ctx.Error(OriginOf(ctx, e.path), e.path, e.message);
  CMDISTILL_RETURN_IF_ERROR(Finish(&ctx));
  return config;
}

}  // namespace

std::string EnumShortName(const pb::EnumValueDescriptor& value) {
  const std::string prefix = CamelToUpperSnake(value.type()->name()) + "_";
  std::string name = value.name();
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  return absl::AsciiStrToLower(name);
}

std::string MethodName(v1::Method method) {
  const pb::EnumValueDescriptor* v =
      v1::Method_descriptor()->FindValueByNumber(method);
  return v == nullptr ? "unknown" : EnumShortName(*v);
}

std::string MethodLabel(const v1::RunConfig& c, std::string base) {
  if (base.empty()) base = MethodName(c.method());
  const v1::ConstraintConfig& k = c.constraint();
  const v1::Method m = c.method();
  const bool gated = m == v1::METHOD_CMDP || m == v1::METHOD_SAUTE ||
                     m == v1::METHOD_WEAKEST_LINK;
  std::vector<std::string> departures;
  if (m == v1::METHOD_CMDP && k.kappa() != 1.0)
    departures.push_back(absl::StrFormat("constraint.kappa=%g", k.kappa()));
  if (gated && k.keep_task_reward_when_infeasible())
    departures.push_back("constraint.keep_task_reward_when_infeasible=true");
  if (gated && k.penalty_placement() != v1::PENALTY_PLACEMENT_PER_TOKEN)
    departures.push_back("constraint.penalty_placement=terminal");
  if (m == v1::METHOD_CMDP &&
      k.term_two_denominator() != v1::TERM_TWO_DENOMINATOR_INFEASIBLE_TOKENS)
    departures.push_back("constraint.term_two_denominator=all_tokens");
  if (m == v1::METHOD_LAGRANGIAN &&
      k.lagrangian_constraint() == v1::LAGRANGIAN_CONSTRAINT_VIOLATION_RATE)
    departures.push_back("constraint.lagrangian_constraint=violation_rate");
  for (const std::string& d : departures) {
    if (base.find(d) != std::string::npos) continue;
    absl::StrAppend(&base, "@", d);  // the experiment's variant syntax
  }
  return base;
}

RunConfig DefaultRunConfig() {
  RunConfig config;
  Context ctx{"default", {}, {}};
  ApplyDefaults(&config, "", &ctx);
  return config;
}

absl::StatusOr<RunConfig> LoadRunConfigFromString(
    const std::string& yaml, const std::string& source_name,
    const std::vector<std::string>& overrides) {
  return Load(yaml, source_name, overrides);
}

absl::StatusOr<RunConfig> LoadRunConfig(
    const std::string& path, const std::vector<std::string>& overrides) {
  auto text = util::ReadFile(path);
  if (!text.ok())
    return absl::NotFoundError(
        absl::StrCat("cannot open config file '", path, "'"));
  return Load(*text, path, overrides);
}

std::string ToYaml(const pb::Message& message) {
  YAML::Emitter out;
  out.SetIndent(2);
  Emit(out, message);
  return std::string(out.c_str()) + "\n";
}

}  // namespace cmdistill::config
