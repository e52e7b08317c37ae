/*
 * test_status_map.c - sbx_status_from_adv (sbx/status.h) against the two
 * libraries' own name tables: every engine code maps to the service code of
 * the same name where one exists (adv_err_name / sbx_err_name, not numbers
 * typed in here), the two documented exceptions map as documented, and
 * nothing maps to a code the service does not know.
 */
#include <stdio.h>
#include <string.h>

#include "../harness.h"
#include "adv/status.h"
#include "sbx/status.h"

/* The service code named "SBX_<name>", or 1 when there is none. */
static int sbx_code_named(const char *name) {
  char want[64];
  snprintf(want, sizeof want, "SBX_%s", name);
  for (int c = 0; c >= -64; c--)
    if (!strcmp(sbx_err_name(c), want))
      return c;
  return 1;
}

TEST(same_names_same_meaning) {
  static const int codes[] = {
#define ADV_CODE(name, val, str) ADV_##name,
      ADV_STATUS_MAP(ADV_CODE)
#undef ADV_CODE
  };
  int checked = 0;
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    const char *an = adv_err_name(codes[i]); /* "ADV_EFORMAT" */
    CHECK(!strncmp(an, "ADV_", 4));
    int mapped = sbx_status_from_adv(codes[i]);
    /* always a code the service knows */
    CHECK(strcmp(sbx_strerror(mapped), "unknown status") != 0);
    int same = sbx_code_named(an + 4);
    if (same != 1) {
      CHECK_EQ_INT(mapped, same);
      checked++;
    }
  }
  CHECK(checked >= 9); /* most names are shared */
  /* the engine's codes without a namesake, as documented in status.h */
  CHECK_EQ_INT(sbx_code_named("ESHAPE"), 1);
  CHECK_EQ_INT(sbx_status_from_adv(ADV_ESHAPE), SBX_EINVAL);
  CHECK_EQ_INT(sbx_code_named("EDTYPE"), 1);
  CHECK_EQ_INT(sbx_status_from_adv(ADV_EDTYPE), SBX_EUNSUPPORTED);
  /* the values differ: the mapping is not the identity */
  CHECK((int)ADV_ENOTFOUND != (int)SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_status_from_adv(ADV_ENOTFOUND), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_status_from_adv(ADV_EFORMAT), SBX_EFORMAT);
  /* unknown engine codes */
  CHECK_EQ_INT(sbx_status_from_adv(-1000), SBX_EINTERNAL);
  CHECK_EQ_INT(sbx_status_from_adv(7), SBX_EINTERNAL);
}

int main(void) {
  RUN(same_names_same_meaning);
  return harness_report();
}
