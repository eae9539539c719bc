#include "accel/vit/int_type.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace hgpipe::accel::vit {

std::string IntType::ToString() const { return absl::StrCat(is_signed ? "s" : "u", bits); }

absl::StatusOr<IntType> ParseIntType(absl::string_view text) {
  int bits = 0;
  if (text.size() < 2 || (text[0] != 's' && text[0] != 'u') ||
      !absl::SimpleAtoi(text.substr(1), &bits) || bits < 1 || bits > kMaxIntTypeBits ||
      text.substr(1)[0] == '+' || text.substr(1)[0] == '-') {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' is not a type s<bits> or u<bits> with bits in 1..", kMaxIntTypeBits));
  }
  return IntType{bits, text[0] == 's'};
}

}  // namespace hgpipe::accel::vit
