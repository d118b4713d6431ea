#include "common/tokenizer/tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"
#include "common/util/sha256.h"
#include "nlohmann/json.hpp"

namespace cmdistill::tokenizer {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------- UTF-8

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// ---------------------------------------------------------------- character
// classes

bool IsL(char32_t c) {
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return true;
    default:
      return false;
  }
}

bool IsN(char32_t c) {
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return true;
    default:
      return false;
  }
}

bool IsS(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }
bool IsCrLf(char32_t c) { return c == '\r' || c == '\n'; }
bool IsOther(char32_t c) { return !IsS(c) && !IsL(c) && !IsN(c); }

char32_t AsciiLower(char32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// ---------------------------------------------------------------- split
// patterns

enum class Pattern { kNone, kQwen, kLlama3, kGpt2 };

const char* kQwenPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| "
    "?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// Length of the contraction at i ('s 't 're 've 'm 'll 'd), 0 if none.
size_t Contraction(const std::vector<char32_t>& s, size_t i, bool ignore_case) {
  const size_t n = s.size();
  if (s[i] != '\'' || i + 1 >= n) return 0;
  auto low = [&](char32_t c) { return ignore_case ? AsciiLower(c) : c; };
  const char32_t a = low(s[i + 1]);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < n) {
    const char32_t b = low(s[i + 2]);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
        (a == 'l' && b == 'l'))
      return 3;
  }
  return 0;
}

// The three whitespace alternatives shared by all patterns: \s*[\r\n]+ (when
// `crlf`), \s+(?!\S), \s+.
size_t Whitespace(const std::vector<char32_t>& s, size_t i, bool crlf) {
  const size_t n = s.size();
  if (!IsS(s[i])) return 0;
  size_t j = i;
  while (j < n && IsS(s[j])) ++j;
  if (crlf) {
    for (size_t p = j; p > i; --p) {
      if (IsCrLf(s[p - 1])) return p - i;
    }
  }
  if (j == n) return j - i;
  if (j - i >= 2) return j - i - 1;
  return j - i;
}

// Length of the match of `pattern` at i (the regex's leftmost alternative that
// matches).
size_t MatchAt(Pattern pattern, const std::vector<char32_t>& s, size_t i) {
  const size_t n = s.size();
  const char32_t c = s[i];
  if (pattern == Pattern::kGpt2) {
    if (size_t k = Contraction(s, i, false)) return k;
    const size_t st = (c == ' ' && i + 1 < n) ? i + 1 : i;
    for (auto cls : {&IsL, &IsN, &IsOther}) {
      size_t from = i;
      if ((*cls)(c)) {
        from = i;
      } else if (st != i && (*cls)(s[st])) {
        from = st;
      } else {
        continue;
      }
      size_t j = from;
      while (j < n && (*cls)(s[j])) ++j;
      return j - i;
    }
    return Whitespace(s, i, /*crlf=*/false);
  }
  if (size_t k = Contraction(s, i, true)) return k;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (IsL(c) || (!IsCrLf(c) && !IsN(c) && i + 1 < n && IsL(s[i + 1]))) {
    size_t j = IsL(c) ? i : i + 1;
    while (j < n && IsL(s[j])) ++j;
    return j - i;
  }
  // \p{N} or \p{N}{1,3}
  if (IsN(c)) {
    if (pattern == Pattern::kQwen) return 1;
    size_t j = i;
    while (j < n && j - i < 3 && IsN(s[j])) ++j;
    return j - i;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t start = n;
  if (IsOther(c)) {
    start = i;
  } else if (c == ' ' && i + 1 < n && IsOther(s[i + 1])) {
    start = i + 1;
  }
  if (start < n) {
    size_t j = start;
    while (j < n && IsOther(s[j])) ++j;
    while (j < n && IsCrLf(s[j])) ++j;
    return j - i;
  }
  return Whitespace(s, i, /*crlf=*/true);
}

// Splits code points into pieces (Isolated): matches and the gaps between them.
void SplitPieces(Pattern pattern, const std::vector<char32_t>& s,
                 std::vector<std::pair<size_t, size_t>>* out) {
  if (pattern == Pattern::kNone) {
    if (!s.empty()) out->push_back({0, s.size()});
    return;
  }
  size_t gap = 0, i = 0;
  while (i < s.size()) {
    const size_t len = MatchAt(pattern, s, i);
    if (len == 0) {
      ++i;
      continue;
    }
    if (gap < i) out->push_back({gap, i});
    out->push_back({i, i + len});
    i += len;
    gap = i;
  }
  if (gap < s.size()) out->push_back({gap, s.size()});
}

// ---------------------------------------------------------------- byte-level
// alphabet

struct ByteAlphabet {
  char32_t byte_to_char[256];
  std::unordered_map<char32_t, uint8_t> char_to_byte;
  ByteAlphabet() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      byte_to_char[b] = printable ? static_cast<char32_t>(b)
                                  : static_cast<char32_t>(256 + extra++);
      char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet* a = new ByteAlphabet();
  return *a;
}

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
         static_cast<uint32_t>(b);
}

}  // namespace

// ---------------------------------------------------------------- generated
// tokenizers

std::string MakeByteLevelTokenizerJson(
    const std::vector<std::string>& merges,
    const std::vector<std::string>& special_tokens) {
  json vocab = json::object();
  int32_t next = 0;
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    AppendUtf8(Alphabet().byte_to_char[b], &ch);
    vocab[ch] = next++;
  }
  json merge_list = json::array();
  for (const std::string& m : merges) {
    const size_t sp = m.find(' ');
    const std::string merged = m.substr(0, sp) + m.substr(sp + 1);
    if (!vocab.contains(merged)) vocab[merged] = next++;
    merge_list.push_back(m);
  }
  json added = json::array();
  for (const std::string& t : special_tokens) {
    added.push_back({{"id", next++},
                     {"content", t},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  json j = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", {{"type", "NFC"}}},
            {"pre_tokenizer",
             {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Split"},
                 {"pattern", {{"Regex", kQwenPattern}}},
                 {"behavior", "Isolated"},
                 {"invert", false}},
                {{"type", "ByteLevel"},
                 {"add_prefix_space", false},
                 {"trim_offsets", false},
                 {"use_regex", false}}}}}},
            {"post_processor",
             {{"type", "ByteLevel"},
              {"add_prefix_space", false},
              {"trim_offsets", false},
              {"use_regex", false}}},
            {"decoder",
             {{"type", "ByteLevel"},
              {"add_prefix_space", false},
              {"trim_offsets", false},
              {"use_regex", false}}},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", ""},
              {"end_of_word_suffix", ""},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", false},
              {"vocab", vocab},
              {"merges", merge_list}}}};
  return j.dump(1) + "\n";
}

// ---------------------------------------------------------------- public UTF-8
// helpers

absl::StatusOr<std::vector<std::string>> TrainByteLevelMerges(
    const std::vector<std::string>& texts, int num_merges) {
  // Distinct pieces with their counts, each as a list of symbols.
  std::map<std::string, int64_t> piece_counts;
  std::vector<std::pair<size_t, size_t>> pieces;
  for (const std::string& text : texts) {
    CMDISTILL_ASSIGN_OR_RETURN(auto cps, DecodeUtf8(text));
    pieces.clear();
    SplitPieces(Pattern::kQwen, cps, &pieces);
    for (const auto& [b, e] : pieces) {
      std::string bytes;
      for (size_t k = b; k < e; ++k) AppendUtf8(cps[k], &bytes);
      ++piece_counts[bytes];
    }
  }
  struct Word {
    std::vector<std::string> symbols;
    int64_t count;
  };
  std::vector<Word> words;
  for (const auto& [bytes, count] : piece_counts) {
    Word w{{}, count};
    for (unsigned char c : bytes) {
      std::string ch;
      AppendUtf8(Alphabet().byte_to_char[c], &ch);
      w.symbols.push_back(ch);
    }
    words.push_back(std::move(w));
  }
  std::vector<std::string> merges;
  for (int round = 0; round < num_merges; ++round) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const Word& w : words) {
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
        pairs[{w.symbols[i], w.symbols[i + 1]}] += w.count;
      }
    }
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_count = 1;
    for (const auto& [pair, count] : pairs) {
      if (count > best_count) {  // std::map order: ties keep the smallest
        best = &pair;
        best_count = count;
      }
    }
    if (best == nullptr) break;
    const std::string a = best->first, b = best->second;
    merges.push_back(a + " " + b);
    for (Word& w : words) {
      std::vector<std::string> merged;
      merged.reserve(w.symbols.size());
      for (size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == a &&
            w.symbols[i + 1] == b) {
          merged.push_back(a + b);
          ++i;
        } else {
          merged.push_back(w.symbols[i]);
        }
      }
      w.symbols = std::move(merged);
    }
  }
  return merges;
}

absl::StatusOr<std::vector<char32_t>> DecodeUtf8(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    char32_t c;
    size_t len;
    if (b < 0x80) {
      c = b;
      len = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      c = b & 0x1F;
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      c = b & 0x0F;
      len = 3;
    } else if (b >= 0xF0 && b <= 0xF4) {
      c = b & 0x07;
      len = 4;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid UTF-8 at byte ", i));
    }
    if (i + len > n)
      return absl::InvalidArgumentError(
          absl::StrCat("truncated UTF-8 at byte ", i));
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cb = static_cast<unsigned char>(s[i + k]);
      if ((cb & 0xC0) != 0x80) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid UTF-8 at byte ", i + k));
      }
      c = (c << 6) | (cb & 0x3F);
    }
    if ((len == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
        (len == 4 && (c < 0x10000 || c > 0x10FFFF))) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid UTF-8 at byte ", i));
    }
    out.push_back(c);
    i += len;
  }
  return out;
}

std::string LossyUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const size_t n = s.size();
  size_t i = 0;
  const std::string replacement = "\xEF\xBF\xBD";
  while (i < n) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b == 0xE0) {
      need = 2, lo = 0xA0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      need = 2;
    } else if (b == 0xED) {
      need = 2, hi = 0x9F;
    } else if (b == 0xF0) {
      need = 3, lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
      need = 3;
    } else if (b == 0xF4) {
      need = 3, hi = 0x8F;
    } else {
      out += replacement;
      ++i;
      continue;
    }
    size_t j = i + 1;
    bool ok = true;
    for (size_t k = 0; k < need; ++k, ++j) {
      if (j >= n) {
        ok = false;
        break;
      }
      const unsigned char cb = static_cast<unsigned char>(s[j]);
      const unsigned char l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
      if (cb < l || cb > h) {
        ok = false;
        break;
      }
    }
    if (ok) {
      out.append(s.substr(i, j - i));
      i = j;
    } else {
      out += replacement;  // one U+FFFD for the maximal invalid subpart [i, j)
      i = j;
    }
  }
  return out;
}

// ---------------------------------------------------------------- the
// tokenizer

struct Tokenizer::Impl {
  std::string source;
  // Vocabulary (byte-level strings) and added tokens.
  std::unordered_map<std::string, int32_t> token_to_id;
  std::vector<std::string> id_to_token;
  std::vector<bool> is_added, is_special;
  struct Added {
    std::string content;
    int32_t id;
    bool lstrip, rstrip, special;
  };
  std::vector<Added> added;
  std::map<std::string, size_t, std::less<>> added_by_content;
  size_t max_added_len = 0;
  bool added_first_byte[256] = {};    // bytes that can start an added token
  std::vector<size_t> added_lengths;  // distinct lengths, longest first
  // BPE.
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>>
      merges;  // pair -> (rank, merged id)
  int32_t byte_ids[256];
  bool ignore_merges = false;
  // Pipeline.
  bool nfc = false, nfkc = false;
  Pattern pattern = Pattern::kNone;
  bool prefix_space = false;
  std::vector<std::pair<bool, int32_t>>
      template_single;  // (is_sequence, special id)
  bool cleanup_spaces = false;
  int32_t eos = -1, bos = -1, pad = -1;
  std::string fingerprint;
  // Cache of BPE results per piece.
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  int32_t Find(std::string_view t) const {
    auto it = token_to_id.find(std::string(t));
    return it == token_to_id.end() ? -1 : it->second;
  }

  void Bpe(const std::string& bytes, std::vector<int32_t>* out) const;
  absl::Status EncodeText(std::string_view text,
                          std::vector<int32_t>* out) const;
};

void Tokenizer::Impl::Bpe(const std::string& bytes,
                          std::vector<int32_t>* out) const {
  if (bytes.empty()) return;
  const bool cacheable = bytes.size() <= 256;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = cache.find(bytes);
    if (it != cache.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> result;
  if (ignore_merges) {
    std::string mapped;
    for (unsigned char b : bytes)
      AppendUtf8(Alphabet().byte_to_char[b], &mapped);
    if (const int32_t id = Find(mapped); id >= 0) result.push_back(id);
  }
  if (result.empty()) {
    // Linked list of symbols and a min-heap of (rank, position) merge
    // candidates, as the reference implementation: lowest rank first, leftmost
    // on ties. O(n log n).
    const int n = static_cast<int>(bytes.size());
    std::vector<int32_t> id(n);
    std::vector<int> prev(n), next(n);
    std::vector<bool> alive(n, true);
    for (int i = 0; i < n; ++i) {
      id[i] = byte_ids[static_cast<unsigned char>(bytes[i])];
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    struct Cand {
      int32_t rank;
      int pos;
      int32_t left, right;
      bool operator>(const Cand& o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int i) {
      if (i < 0 || next[i] < 0) return;
      auto it = merges.find(PairKey(id[i], id[next[i]]));
      if (it != merges.end())
        heap.push({it->second.first, i, id[i], id[next[i]]});
    };
    for (int i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      const int i = c.pos;
      if (!alive[i] || next[i] < 0 || id[i] != c.left || id[next[i]] != c.right)
        continue;
      const int j = next[i];
      id[i] = merges.at(PairKey(c.left, c.right)).second;
      alive[j] = false;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      push(prev[i]);
      push(i);
    }
    for (int i = 0; i >= 0 && i < n; i = next[i]) result.push_back(id[i]);
  }
  out->insert(out->end(), result.begin(), result.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() > 200000) cache.clear();
    cache.emplace(bytes, std::move(result));
  }
}

absl::Status Tokenizer::Impl::EncodeText(std::string_view text,
                                         std::vector<int32_t>* out) const {
  if (text.empty()) return absl::OkStatus();
  std::string normalized(text);
  bool ascii = true;
  for (char ch : text) ascii = ascii && static_cast<unsigned char>(ch) < 0x80;
  if ((nfc || nfkc) && !ascii) {
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* norm = nfc ? icu::Normalizer2::getNFCInstance(err)
                                       : icu::Normalizer2::getNFKCInstance(err);
    if (U_FAILURE(err))
      return absl::InternalError("ICU normalizer unavailable");
    icu::UnicodeString u = norm->normalize(
        icu::UnicodeString::fromUTF8(icu::StringPiece(
            normalized.data(), static_cast<int32_t>(normalized.size()))),
        err);
    if (U_FAILURE(err)) return absl::InternalError("ICU normalization failed");
    normalized.clear();
    u.toUTF8String(normalized);
  }
  if (prefix_space && normalized[0] != ' ') normalized.insert(0, " ");
  CMDISTILL_ASSIGN_OR_RETURN(auto cps, DecodeUtf8(normalized));
  std::vector<std::pair<size_t, size_t>> pieces;
  SplitPieces(pattern, cps, &pieces);
  std::string bytes;
  for (const auto& [b, e] : pieces) {
    bytes.clear();
    for (size_t k = b; k < e; ++k) AppendUtf8(cps[k], &bytes);
    Bpe(bytes, out);
  }
  return absl::OkStatus();
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(
    const std::string& path) {
  namespace fs = std::filesystem;
  std::string file = path, config;
  if (fs::is_directory(path)) {
    file = path + "/tokenizer.json";
    config = path + "/tokenizer_config.json";
  } else {
    config = fs::path(path).parent_path().string() + "/tokenizer_config.json";
  }
  auto read = [](const std::string& p) -> absl::StatusOr<std::string> {
    auto text = util::ReadFile(p);
    if (!text.ok())
      return absl::NotFoundError(absl::StrCat("cannot open '", p, "'"));
    return text;
  };
  CMDISTILL_ASSIGN_OR_RETURN(auto text, read(file));
  std::string config_text;
  if (fs::exists(config)) {
    CMDISTILL_ASSIGN_OR_RETURN(auto c, read(config));
    config_text = std::move(c);
  }
  return FromJson(text, config_text, file);
}

namespace {

// A member of a JSON object, or null when `o` is not an object or lacks it
// (nlohmann's operator[] on a const object with a missing key is undefined
// behaviour: found by fuzzing).
// `key` is a C string, not a std::string: GCC 14's -Wdangling-reference
// takes a reference returned from a call given a temporary std::string for
// one into that temporary.
const json& Member(const json& o, const char* key) {
  static const json* kNull = new json();
  if (!o.is_object()) return *kNull;
  const auto it = o.find(key);
  return it == o.end() ? *kNull : *it;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(
    const std::string& text, const std::string& config_text,
    const std::string& source) {
  // Values of the wrong JSON type throw from nlohmann's accessors: a
  // malformed file, reported as such (found by fuzzing).
  try {
    return FromJsonUnchecked(text, config_text, source);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": malformed tokenizer.json: ", e.what()));
  }
}

// Long on purpose: one pass over tokenizer.json's sections in the format's
// order (model, added tokens, normalizer, pre-tokenizer, post-processor,
// decoder), each a few checked lookups; split, the pieces would share the
// half-built tokenizer and the error helper.
absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJsonUnchecked(
    const std::string& text, const std::string& config_text,
    const std::string& source) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  std::string canon;  // canonical description for the fingerprint
  // Model.
  if (!j.contains("model") || !j["model"].is_object()) return bad("no 'model'");
  const json& m = j["model"];
  if (m.value("type", std::string("BPE")) != "BPE")
    return bad("model.type must be BPE");
  if (m.contains("dropout") && !m["dropout"].is_null())
    return bad("BPE dropout is not supported");
  if (m.value("byte_fallback", false))
    return bad("byte_fallback is not supported");
  if (!m.contains("vocab") || !m["vocab"].is_object())
    return bad("model.vocab missing");
  impl->ignore_merges = m.value("ignore_merges", false);
  int32_t max_id = -1;
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    if (!it.value().is_number_integer())
      return bad("vocab ids must be integers");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > (1 << 24))
      return bad(absl::StrCat("vocab id ", id, " out of range"));
    impl->token_to_id[it.key()] = static_cast<int32_t>(id);
    max_id = std::max<int32_t>(max_id, static_cast<int32_t>(id));
  }
  // Added tokens.
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const json& a : j["added_tokens"]) {
      if (!a.contains("id") || !a.contains("content") ||
          !a["content"].is_string()) {
        return bad("added_tokens entries need id and content");
      }
      Impl::Added t{a["content"].get<std::string>(), a["id"].get<int32_t>(),
                    a.value("lstrip", false), a.value("rstrip", false),
                    a.value("special", false)};
      if (a.value("single_word", false))
        return bad("single_word added tokens are not supported");
      if (t.content.empty() || t.id < 0)
        return bad("added token with empty content or bad id");
      max_id = std::max(max_id, t.id);
      impl->added_by_content[t.content] = impl->added.size();
      impl->max_added_len = std::max(impl->max_added_len, t.content.size());
      impl->added_first_byte[static_cast<unsigned char>(t.content[0])] = true;
      if (std::find(impl->added_lengths.begin(), impl->added_lengths.end(),
                    t.content.size()) == impl->added_lengths.end()) {
        impl->added_lengths.push_back(t.content.size());
      }
      impl->added.push_back(t);
    }
  }
  std::sort(impl->added_lengths.rbegin(), impl->added_lengths.rend());
  impl->id_to_token.assign(static_cast<size_t>(max_id + 1), "");
  impl->is_added.assign(impl->id_to_token.size(), false);
  impl->is_special.assign(impl->id_to_token.size(), false);
  for (const auto& [tok, id] : impl->token_to_id) impl->id_to_token[id] = tok;
  for (const auto& a : impl->added) {
    impl->id_to_token[a.id] = a.content;
    impl->is_added[a.id] = true;
    impl->is_special[a.id] = a.special;
    impl->token_to_id.emplace(a.content, a.id);
  }
  for (size_t id = 0; id < impl->id_to_token.size(); ++id) {
    absl::StrAppend(&canon, id, "\t", impl->id_to_token[id], "\t",
                    impl->is_added[id] ? 1 : 0, impl->is_special[id] ? 1 : 0,
                    "\n");
  }
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    AppendUtf8(Alphabet().byte_to_char[b], &ch);
    impl->byte_ids[b] = impl->Find(ch);
    if (impl->byte_ids[b] < 0)
      return bad(absl::StrCat("byte ", b, " has no vocabulary entry"));
  }
  if (!m.contains("merges") || !m["merges"].is_array())
    return bad("model.merges missing");
  int32_t rank = 0;
  for (const json& mg : m["merges"]) {
    std::string a, b;
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos)
        return bad(absl::StrCat("merge '", s, "' is not 'a b'"));
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() &&
               mg[1].is_string()) {
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      return bad("merges must be 'a b' strings or [a, b] pairs");
    }
    const int32_t ia = impl->Find(a), ib = impl->Find(b),
                  im = impl->Find(a + b);
    if (ia < 0 || ib < 0 || im < 0) {
      return bad(absl::StrCat("merge '", a, " ", b,
                              "' uses tokens outside the vocabulary"));
    }
    impl->merges.emplace(PairKey(ia, ib), std::make_pair(rank++, im));
    absl::StrAppend(&canon, "m\t", ia, "\t", ib, "\n");
  }
  // Normalizer.
  std::vector<json> norms;
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const json& n = j["normalizer"];
    if (n.value("type", "") == "Sequence") {
      if (!Member(n, "normalizers").is_array())
        return bad("normalizer Sequence without its 'normalizers' list");
      for (const json& x : Member(n, "normalizers")) norms.push_back(x);
    } else {
      norms.push_back(n);
    }
  }
  for (const json& n : norms) {
    const std::string t = n.value("type", "");
    if (t == "NFC") {
      impl->nfc = true;
    } else if (t == "NFKC") {
      impl->nfkc = true;
    } else {
      return bad(absl::StrCat("normalizer '", t, "' is not supported"));
    }
    absl::StrAppend(&canon, "norm\t", t, "\n");
  }
  // Pre-tokenizer.
  std::vector<json> pres;
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    const json& p = j["pre_tokenizer"];
    if (p.value("type", "") == "Sequence") {
      if (!Member(p, "pretokenizers").is_array())
        return bad("pre_tokenizer Sequence without its 'pretokenizers' list");
      for (const json& x : Member(p, "pretokenizers")) pres.push_back(x);
    } else {
      pres.push_back(p);
    }
  }
  bool have_byte_level = false;
  for (const json& p : pres) {
    const std::string t = p.value("type", "");
    if (t == "Split") {
      if (impl->pattern != Pattern::kNone)
        return bad("only one Split pre-tokenizer is supported");
      const std::string behavior = p.value("behavior", "");
      if (behavior != "Isolated" || p.value("invert", false)) {
        return bad(
            "Split pre-tokenizer must have behavior Isolated and invert false");
      }
      const std::string re =
          p.contains("pattern") && p["pattern"].contains("Regex")
              ? Member(Member(p, "pattern"), "Regex")
              : "";
      if (re == kQwenPattern) {
        impl->pattern = Pattern::kQwen;
      } else if (re == kLlama3Pattern) {
        impl->pattern = Pattern::kLlama3;
      } else if (re == kGpt2Pattern) {
        impl->pattern = Pattern::kGpt2;
      } else {
        return bad(absl::StrCat(
            "Split pattern is not one of the supported ones (Qwen2/3, "
            "Llama 3, GPT-2): ",
            re.substr(0, 80)));
      }
    } else if (t == "ByteLevel") {
      have_byte_level = true;
      impl->prefix_space = p.value("add_prefix_space", false);
      if (p.value("use_regex", true)) {
        if (impl->pattern != Pattern::kNone) return bad("two split patterns");
        impl->pattern = Pattern::kGpt2;
      }
    } else {
      return bad(absl::StrCat("pre_tokenizer '", t, "' is not supported"));
    }
  }
  if (!have_byte_level)
    return bad("a ByteLevel pre-tokenizer is required (byte-level BPE)");
  absl::StrAppend(&canon, "pattern\t", static_cast<int>(impl->pattern),
                  "\tprefix\t", impl->prefix_space, "\tignore_merges\t",
                  impl->ignore_merges, "\n");
  // Post-processor.
  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    const json& pp = j["post_processor"];
    const std::string t = pp.value("type", "");
    std::vector<json> procs;
    if (t == "Sequence") {
      if (!Member(pp, "processors").is_array())
        return bad("post_processor Sequence without its 'processors' list");
      for (const json& x : Member(pp, "processors")) procs.push_back(x);
    } else {
      procs.push_back(pp);
    }
    for (const json& p : procs) {
      const std::string pt = p.value("type", "");
      if (pt == "ByteLevel") continue;
      if (pt != "TemplateProcessing") {
        return bad(absl::StrCat("post_processor '", pt, "' is not supported"));
      }
      for (const json& piece : Member(p, "single")) {
        if (piece.contains("Sequence")) {
          impl->template_single.push_back({true, -1});
        } else if (piece.contains("SpecialToken")) {
          const std::string name =
              Member(piece, "SpecialToken").value("id", "");
          const json& st = Member(p, "special_tokens");
          if (!st.contains(name))
            return bad(absl::StrCat("template token '", name, "' undefined"));
          for (const json& id : Member(Member(st, name.c_str()), "ids")) {
            impl->template_single.push_back({false, id.get<int32_t>()});
          }
        }
      }
    }
  }
  for (const auto& [seq, id] : impl->template_single)
    absl::StrAppend(&canon, "tpl\t", seq, id, "\n");
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    const std::string d = j["decoder"].value("type", "");
    if (d != "ByteLevel")
      return bad(absl::StrCat("decoder '", d, "' is not supported"));
  }
  // tokenizer_config.json.
  if (!config_text.empty()) {
    json c = json::parse(config_text, nullptr, false);
    if (c.is_discarded() || !c.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": tokenizer_config.json is not JSON"));
    }
    impl->cleanup_spaces = c.value("clean_up_tokenization_spaces", false);
    auto token_id = [&](const char* key) -> int32_t {
      if (!c.contains(key) || c[key].is_null()) return -1;
      std::string s = c[key].is_string()
                          ? c[key].get<std::string>()
                          : c[key].value("content", std::string());
      return impl->Find(s);
    };
    impl->eos = token_id("eos_token");
    impl->bos = token_id("bos_token");
    impl->pad = token_id("pad_token");
  }
  absl::StrAppend(&canon, "cleanup\t", impl->cleanup_spaces, "\n");
  impl->fingerprint = Sha256Hex(canon);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(
    std::string_view text, bool add_special_tokens) const {
  CMDISTILL_RETURN_IF_ERROR(DecodeUtf8(text).status());
  std::vector<int32_t> ids;
  const Impl& m = *impl_;
  // Split out added tokens (leftmost, longest), then encode the text between
  // them.
  size_t seg = 0, i = 0;
  auto is_ws = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  };
  while (i < text.size()) {
    size_t best = 0;
    const Impl::Added* hit = nullptr;
    if (m.added_first_byte[static_cast<unsigned char>(text[i])]) {
      for (size_t len : m.added_lengths) {  // longest first
        if (len > text.size() - i) continue;
        auto it = m.added_by_content.find(text.substr(i, len));
        if (it != m.added_by_content.end()) {
          best = len;
          hit = &m.added[it->second];
          break;
        }
      }
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t text_end = i;
    if (hit->lstrip) {
      while (text_end > seg && is_ws(text[text_end - 1])) --text_end;
    }
    CMDISTILL_RETURN_IF_ERROR(
        m.EncodeText(text.substr(seg, text_end - seg), &ids));
    ids.push_back(hit->id);
    i += best;
    if (hit->rstrip) {
      while (i < text.size() && is_ws(text[i])) ++i;
    }
    seg = i;
  }
  CMDISTILL_RETURN_IF_ERROR(m.EncodeText(text.substr(seg), &ids));
  if (add_special_tokens && !m.template_single.empty()) {
    std::vector<int32_t> out;
    for (const auto& [is_seq, id] : m.template_single) {
      if (is_seq) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.push_back(id);
      }
    }
    return out;
  }
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids,
                                              bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string bytes;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    if (id < 0 || id >= static_cast<int32_t>(m.id_to_token.size()) ||
        (m.id_to_token[id].empty() && !m.is_added[id])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "id ", id, " at position ", k, " is not in the vocabulary"));
    }
    if (skip_special_tokens && m.is_special[id]) continue;
    const std::string& tok = m.id_to_token[id];
    if (m.is_added[id]) {
      bytes += tok;  // added tokens are plain text
      continue;
    }
    CMDISTILL_ASSIGN_OR_RETURN(auto cps, DecodeUtf8(tok));
    for (char32_t c : cps) {
      auto it = Alphabet().char_to_byte.find(c);
      if (it != Alphabet().char_to_byte.end()) {
        bytes.push_back(static_cast<char>(it->second));
      } else {
        AppendUtf8(c, &bytes);
      }
    }
  }
  std::string text = LossyUtf8(bytes);
  if (m.cleanup_spaces) {
    static const std::pair<const char*, const char*> kCleanups[] = {
        {" .", "."},     {" ?", "?"},     {" !", "!"},   {" ,", ","},
        {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"},
        {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kCleanups) {
      std::string out;
      const std::string f(from);
      size_t p = 0, q;
      while ((q = text.find(f, p)) != std::string::npos) {
        out.append(text, p, q - p);
        out.append(to);
        p = q + f.size();
      }
      out.append(text, p, std::string::npos);
      text = std::move(out);
    }
  }
  return text;
}

int64_t Tokenizer::vocab_size() const {
  return static_cast<int64_t>(impl_->id_to_token.size());
}
int32_t Tokenizer::TokenToId(std::string_view token) const {
  return impl_->Find(token);
}
std::string Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(impl_->id_to_token.size()))
    return "";
  return impl_->id_to_token[id];
}
bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(impl_->is_special.size()) &&
         impl_->is_special[id];
}
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
const std::string& Tokenizer::fingerprint() const { return impl_->fingerprint; }

}  // namespace cmdistill::tokenizer
