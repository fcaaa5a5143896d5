#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/ops/backend.h>

#include "test_util.h"

#include <sstream>

namespace manifold_diffusion {
namespace test_enum {
using manifold_diffusion::operator<<;
enum class Fruit { Apple, Pear, Quince };
}  // namespace test_enum

template <>
struct EnumTraits<test_enum::Fruit> {
  static constexpr const char* type_name = "Fruit";
  static constexpr EnumEntry<test_enum::Fruit> entries[] = {
      {test_enum::Fruit::Apple, "apple"},
      {test_enum::Fruit::Pear, "pear"},
      {test_enum::Fruit::Pear, "poire"},
      {test_enum::Fruit::Quince, "quince_tree"},
  };
};
}  // namespace manifold_diffusion

namespace {
using mdiff::test_enum::Fruit;

TEST(Enum, RoundTripsEveryValue) {
  for (Fruit f : {Fruit::Apple, Fruit::Pear, Fruit::Quince}) {
    EXPECT_EQ(mdiff::enum_from_string<Fruit>(mdiff::to_string(f)), f);
  }
  EXPECT_EQ(mdiff::to_string(Fruit::Pear), "pear");
}

TEST(Enum, ParsingIgnoresCaseAcceptsAliasesAndDashes) {
  EXPECT_EQ(mdiff::enum_from_string<Fruit>("APPLE"), Fruit::Apple);
  EXPECT_EQ(mdiff::enum_from_string<Fruit>("poire"), Fruit::Pear);
  EXPECT_EQ(mdiff::enum_from_string<Fruit>("Quince-Tree"), Fruit::Quince);
  EXPECT_FALSE(mdiff::try_enum_from_string<Fruit>("banana").has_value());
}

TEST(Enum, NamesAreCanonicalAndUnique) {
  EXPECT_EQ(mdiff::enum_names<Fruit>(), (std::vector<std::string>{"apple", "pear", "quince_tree"}));
}

TEST(Enum, UnknownNameListsTheChoices) {
  MD_EXPECT_ERROR(mdiff::enum_from_string<Fruit>("banana"), "unknown Fruit 'banana'",
                  "expected one of: apple, pear, quince_tree");
  MD_EXPECT_ERROR(mdiff::to_string(static_cast<Fruit>(42)), "invalid Fruit value 42");
}

TEST(Enum, FormatsWithFmtAndStreams) {
  EXPECT_EQ(fmt::format("{}", Fruit::Quince), "quince_tree");
  EXPECT_EQ(fmt::format("[{:>6}]", Fruit::Pear), "[  pear]");
  std::ostringstream os;
  os << Fruit::Apple;
  EXPECT_EQ(os.str(), "apple");
}

TEST(Enum, OpBackendNames) {
  using mdiff::ops::OpBackend;
  EXPECT_EQ(mdiff::enum_from_string<OpBackend>("fused"), OpBackend::Native);
  EXPECT_EQ(mdiff::to_string(OpBackend::Reference), "reference");
  EXPECT_EQ(mdiff::enum_names<OpBackend>().size(), 3u);
}

}  // namespace
