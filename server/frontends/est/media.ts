/** RFC 7030 §4 media types. */
export const PKCS10 = "application/pkcs10";
export const PKCS7_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only";
export const PKCS7 = "application/pkcs7-mime";
export const CSRATTRS = "application/csrattrs";
export const PKCS8 = "application/pkcs8";

/** The media type without parameters, lowercased; "" when absent. */
export function essence(contentType: string | undefined): string {
  return (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}
