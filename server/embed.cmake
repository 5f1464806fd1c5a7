# Writes OUT, a C file defining sbx_openapi_json[] with the bytes of IN
# (an empty string when IN does not exist yet).
if(EXISTS ${IN})
  file(READ ${IN} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
else()
  set(bytes "")
endif()
file(WRITE ${OUT} "/* Generated from the OpenAPI description; do not edit.  */\n"
                  "const char sbx_openapi_json[] = {${bytes} 0x00};\n")
