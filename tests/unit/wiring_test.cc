#include "services/common/wiring.h"

#include "common/config/config.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::services {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;

TEST(Wiring, ServerAndChannelOptionsFollowTheRunFile) {
  cmdistill::testing::TempDir dir;
  const std::string token = dir.Write("token", "tok-123\n");
  auto config = config::LoadRunConfigFromString(
      "security:\n  tls: true\n  require_client_certificate: true\n  "
      "token_file: " +
          token +
          "\n  server: {cert_file: s.pem, key_file: s.key, ca_file: ca.pem}\n"
          "  client: {cert_file: c.pem, key_file: c.key, ca_file: ca.pem, "
          "server_name_override: teacher}\n"
          "services:\n  teacher: {listen: \"0.0.0.0:50052\"}\n  "
          "max_message_mib: 8\n",
      "run.yaml");
  ASSERT_OK(config.status());
  ASSERT_OK_AND_ASSIGN(auto server,
                       ServerOptionsFor(*config, config->services().teacher()));
  EXPECT_EQ(server.listen_address, "0.0.0.0:50052");
  EXPECT_TRUE(server.use_tls);
  EXPECT_TRUE(server.tls.require_client_certificate);
  EXPECT_EQ(server.tls.client_ca_file, "ca.pem");
  EXPECT_EQ(server.bearer_token, "tok-123");
  EXPECT_EQ(server.max_message_bytes, 8 << 20);
  ASSERT_OK_AND_ASSIGN(auto channel,
                       ChannelOptionsFor(*config, "dns:///teacher:50052"));
  EXPECT_EQ(channel.target, "dns:///teacher:50052");
  EXPECT_EQ(channel.cert_file, "c.pem");
  EXPECT_EQ(channel.server_name_override, "teacher");
  ASSERT_OK_AND_ASSIGN(auto call, CallOptionsFor(*config));
  EXPECT_EQ(call.bearer_token, "tok-123");
  EXPECT_EQ(call.timeout, absl::Seconds(30));
}

TEST(Wiring, DefaultsListenOnLoopbackPortZeroAndMissingTokenFileIsNamed) {
  auto config = config::LoadRunConfigFromString("", "run.yaml");
  ASSERT_OK(config.status());
  ASSERT_OK_AND_ASSIGN(auto server,
                       ServerOptionsFor(*config, config->services().learner()));
  EXPECT_EQ(server.listen_address, "127.0.0.1:0");
  EXPECT_TRUE(server.bearer_token.empty());
  config->mutable_security()->set_token_file("/nonexistent/token");
  EXPECT_THAT(
      ServerOptionsFor(*config, config->services().learner()),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/token")));
  EXPECT_THAT(ChannelOptionsFor(*config, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cmdistill::services
