#include <memory>

#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  CMDISTILL_ASSIGN_OR_RETURN(int h, Half(x));
  CMDISTILL_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckPositive(int x) {
  if (x <= 0) return absl::OutOfRangeError("not positive");
  return absl::OkStatus();
}

absl::Status Both(int a, int b) {
  CMDISTILL_RETURN_IF_ERROR(CheckPositive(a));
  CMDISTILL_RETURN_IF_ERROR(CheckPositive(b));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<int>> MoveOnly(bool ok) {
  if (!ok) return absl::NotFoundError("none");
  return std::make_unique<int>(7);
}

absl::StatusOr<int> UseMoveOnly(bool ok) {
  CMDISTILL_ASSIGN_OR_RETURN(auto p, MoveOnly(ok));
  return *p;
}

TEST(StatusMacros, AssignOrReturnPropagatesFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
  EXPECT_THAT(Quarter(3), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(StatusMacros, ReturnIfErrorStopsAtFirstFailure) {
  EXPECT_OK(Both(1, 2));
  EXPECT_THAT(Both(1, 0), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(Both(-1, 0),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("positive")));
}

TEST(StatusMacros, AssignOrReturnWorksWithMoveOnlyValues) {
  EXPECT_EQ(*UseMoveOnly(true), 7);
  EXPECT_THAT(UseMoveOnly(false), StatusIs(absl::StatusCode::kNotFound));
}

TEST(StatusMacros, AnnotatePrefixesMessageAndKeepsCode) {
  EXPECT_THAT(
      Annotate(absl::DataLossError("bad crc"), "model.safetensors"),
      StatusIs(absl::StatusCode::kDataLoss, "model.safetensors: bad crc"));
  EXPECT_OK(Annotate(absl::OkStatus(), "x"));
  absl::Status labelled = absl::InvalidArgumentError("bad");
  labelled.SetPayload("type.example/label", absl::Cord("why"));
  const absl::Status annotated = Annotate(labelled, "ctx");
  ASSERT_TRUE(annotated.GetPayload("type.example/label").has_value());
  EXPECT_EQ(*annotated.GetPayload("type.example/label"), "why");
}

TEST(GrpcStatus, EveryCanonicalCodeRoundTrips) {
  for (int c = 0; c <= 16; ++c) {
    const absl::Status s(static_cast<absl::StatusCode>(c), c == 0 ? "" : "msg");
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), c);
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("full")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("full")).error_message(),
            "full");
}

TEST(StatusMatcher, MatchesCodeAndMessage) {
  const absl::Status s = absl::UnavailableError("closed");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, "closed"));
  EXPECT_THAT(s, Not(StatusIs(absl::StatusCode::kInternal)));
  EXPECT_THAT(s, Not(StatusIs(absl::StatusCode::kUnavailable, "open")));
  EXPECT_THAT(absl::StatusOr<int>(3), cmdistill::testing::IsOk());
}

}  // namespace
}  // namespace cmdistill
