# Stand-in for an OpenWrt SDK's include/package.mk in the tests.
#
# BuildPackage expands the package's defines as the SDK does: the fields of
# Package/NAME are evaluated (and the required ones checked), Package/NAME/install
# is called inside the text that is eval'd into the `install` recipe (two
# expansions: `$$$$` reaches the shell as `$`), and the scripts, conffiles and
# description are expanded once (`$$` reaches the shell as `$`), as the SDK
# exports them. Targets:
#   prepare   Build/Prepare into a fresh PKG_BUILD_DIR
#   install   prepare, then Package/NAME/install into $(STAGE)
# With DUMP=DIR, the package's variables go to DIR/vars (NAME=value lines) and
# its defines to DIR/<define>.

PKG_BUILD_DIR?=$(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)

define Build/Prepare
	$(CP) ./src/. $(PKG_BUILD_DIR)/
endef

define BuildPackage
$(eval $(Package/$(1)))
$(foreach field,TITLE CATEGORY SECTION,$(if $($(field)),,$(error Package/$(1) is missing the $(field) field)))
$(if $(DUMP),$(shell mkdir -p $(DUMP))\
$(file >$(DUMP)/vars,PKG_NAME=$(PKG_NAME)
PKG_VERSION=$(PKG_VERSION)
PKG_RELEASE=$(PKG_RELEASE)
PKG_LICENSE=$(PKG_LICENSE)
SECTION=$(SECTION)
CATEGORY=$(CATEGORY)
TITLE=$(TITLE)
PKGARCH=$(PKGARCH)
DEPENDS=$(strip $(DEPENDS)))\
$(foreach d,description conffiles postinst prerm postrm,$(file >$(DUMP)/$(d),$(Package/$(1)/$(d)))))

.PHONY: prepare install
prepare:
	rm -rf $(PKG_BUILD_DIR)
	mkdir -p $(PKG_BUILD_DIR)
	$(Build/Prepare)

install: prepare
	rm -rf $$(STAGE)
	mkdir -p $$(STAGE)
	$(call Package/$(1)/install,$$(STAGE))
endef
