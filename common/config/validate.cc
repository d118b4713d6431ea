#include "common/config/validate.h"

#include "absl/strings/match.h"

namespace cmdistill::config {

void CheckCrossFieldRules(const v1::RunConfig& c,
                          std::vector<CrossFieldError>* errors) {
  auto add = [errors](std::string path, std::string message) {
    errors->push_back({std::move(path), std::move(message)});
  };
  if (!absl::StrContains(c.data().prompt_template(), "{question}")) {
    add("data.prompt_template", "must contain the placeholder {question}");
  }
  if (c.data().format() == v1::DATA_FORMAT_GENERIC) {
    if (c.data().question_field().empty()) {
      add("data.question_field", "must be set when data.format is generic");
    }
    if (c.data().answer_field().empty()) {
      add("data.answer_field", "must be set when data.format is generic");
    }
  }
  if (c.actor().retry_max_backoff_seconds() <
      c.actor().retry_initial_backoff_seconds()) {
    add("actor.retry_max_backoff_seconds",
        "must be at least actor.retry_initial_backoff_seconds");
  }
  if (c.constraint().lambda_init() > c.constraint().lambda_max()) {
    add("constraint.lambda_init", "must not exceed constraint.lambda_max");
  }
  const auto& sec = c.security();
  if (sec.require_client_certificate() && !sec.tls()) {
    add("security.require_client_certificate",
        "mutual TLS needs security.tls: true");
  }
  if (sec.tls()) {
    if (sec.server().cert_file().empty() != sec.server().key_file().empty()) {
      add("security.server", "cert_file and key_file must be given together");
    }
    if (sec.client().cert_file().empty() != sec.client().key_file().empty()) {
      add("security.client", "cert_file and key_file must be given together");
    }
    if (sec.require_client_certificate() && sec.server().ca_file().empty()) {
      add("security.server.ca_file",
          "mutual TLS needs the CA that signs client certificates");
    }
  }
  for (const auto* m : {&c.student(), &c.teacher()}) {
    const std::string& d = m->device();
    const bool ok = d == "auto" || d == "cpu" || d == "cuda" ||
                    (absl::StartsWith(d, "cuda:") && d.size() > 5 &&
                     d.find_first_not_of("0123456789", 5) == std::string::npos);
    if (!ok) {
      add(m == &c.student() ? "student.device" : "teacher.device",
          "must be auto, cpu, cuda or cuda:N, not '" + d + "'");
    }
  }
}

}  // namespace cmdistill::config
