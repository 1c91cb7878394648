// @peculiar/x509 (our independent parser in tests) needs the Reflect metadata API.
import "reflect-metadata";
