# Stand-in for an OpenWrt SDK's rules.mk in the tests: the variables and
# install commands a feed package Makefile uses, with the SDK's values.
INCLUDE_DIR:=$(TOPDIR)/include
BUILD_DIR?=$(TOPDIR)/build_dir
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
CP:=cp -fpR
