// gMock matchers for absl::Status and absl::StatusOr<T> (Abseil 20220623 has
// none).
//
//   EXPECT_THAT(queue.TryPush(x),
//   StatusIs(absl::StatusCode::kResourceExhausted)); EXPECT_THAT(LoadConfig(f),
//   StatusIs(absl::StatusCode::kInvalidArgument,
//                                       HasSubstr("optimizer.lr")));
//   ASSERT_OK(status);  ASSERT_OK_AND_ASSIGN(auto v, MakeV());
#ifndef CMDISTILL_TESTS_TESTING_STATUS_MATCHERS_H_
#define CMDISTILL_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cmdistill::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

template <typename CodeMatcher, typename MessageMatcher>
class StatusIsMatcher {
 public:
  StatusIsMatcher(CodeMatcher code, MessageMatcher message)
      : code_(std::move(code)), message_(std::move(message)) {}

  template <typename T>
  operator ::testing::Matcher<const T&>() const {  // NOLINT: implicit by design
    return ::testing::MakeMatcher(new Impl<T>(code_, message_));
  }

 private:
  template <typename T>
  class Impl : public ::testing::MatcherInterface<const T&> {
   public:
    Impl(const CodeMatcher& code, const MessageMatcher& message)
        : code_(::testing::SafeMatcherCast<absl::StatusCode>(code)),
          message_(::testing::SafeMatcherCast<const std::string&>(message)) {}
    bool MatchAndExplain(
        const T& value,
        ::testing::MatchResultListener* listener) const override {
      const absl::Status& s = GetStatus(value);
      *listener << "whose status is " << s;
      return code_.Matches(s.code()) &&
             message_.Matches(std::string(s.message()));
    }
    void DescribeTo(std::ostream* os) const override {
      *os << "has a status code that ";
      code_.DescribeTo(os);
      *os << " and a message that ";
      message_.DescribeTo(os);
    }

   private:
    ::testing::Matcher<absl::StatusCode> code_;
    ::testing::Matcher<const std::string&> message_;
  };

  CodeMatcher code_;
  MessageMatcher message_;
};

template <typename CodeMatcher, typename MessageMatcher>
StatusIsMatcher<CodeMatcher, MessageMatcher> StatusIs(CodeMatcher code,
                                                      MessageMatcher message) {
  return {std::move(code), std::move(message)};
}
template <typename CodeMatcher>
auto StatusIs(CodeMatcher code) {
  return StatusIs(std::move(code), ::testing::_);
}
inline auto IsOk() { return StatusIs(absl::StatusCode::kOk); }

}  // namespace cmdistill::testing

#define CMDISTILL_TESTING_CONCAT_INNER_(a, b) a##b
#define CMDISTILL_TESTING_CONCAT_(a, b) CMDISTILL_TESTING_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr) \
  ASSERT_THAT((expr), ::cmdistill::testing::StatusIs(::absl::StatusCode::kOk))
#define EXPECT_OK(expr) \
  EXPECT_THAT((expr), ::cmdistill::testing::StatusIs(::absl::StatusCode::kOk))
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                       \
  auto CMDISTILL_TESTING_CONCAT_(cmdistill_test_so_, __LINE__) = (rexpr);      \
  ASSERT_OK(CMDISTILL_TESTING_CONCAT_(cmdistill_test_so_, __LINE__).status()); \
  lhs = std::move(CMDISTILL_TESTING_CONCAT_(cmdistill_test_so_, __LINE__))     \
            .value()

#endif  // CMDISTILL_TESTS_TESTING_STATUS_MATCHERS_H_
