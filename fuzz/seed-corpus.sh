#!/usr/bin/env bash
# Writes seed inputs for every fuzz target into fuzz/corpus/<target>/ from the checked-in
# golden vectors and a valid request body per operation. Idempotent; run from anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
corpus="$here/corpus"
mkdir -p "$corpus"/{events_decode,blob_open,envelope_read,canonical_context,kms_request}

# First line of a golden .hex file, as bytes.
unhex() { perl -ne 'chomp; print pack("H*", $_); exit' "$1"; }

for f in "$root"/events/tests/golden/*.hex; do
  unhex "$f" > "$corpus/events_decode/$(basename "$f" .hex)"
done

# blob_open: 32 bytes of material (00 01 .. 1f, the golden vector's) then the golden blob.
{ perl -e 'print pack("C*", 0..31)'; unhex "$root/libs/crypto/tests/golden/blob_v1.hex"; } \
  > "$corpus/blob_open/blob_v1"

# envelope_read uses the golden vector's data key, so this file decrypts in full.
unhex "$root/libs/crypto/tests/golden/envelope_v1.hex" > "$corpus/envelope_read/envelope_v1"

# canonical_context: {}, {"a":"xy","b":"2"}, {"purpose":"test","tenant":"ü"}.
printf '\x00\x00\x00\x00' > "$corpus/canonical_context/empty"
printf '\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x02xy\x00\x00\x00\x01b\x00\x00\x00\x012' \
  > "$corpus/canonical_context/two_pairs"
printf '\x00\x00\x00\x02\x00\x00\x00\x07purpose\x00\x00\x00\x04test\x00\x00\x00\x06tenant\x00\x00\x00\x02\xc3\xbc' \
  > "$corpus/canonical_context/utf8"

# kms_request: one selector byte (the index in Operation::ALL) then a valid body.
key='1234abcd-12ab-34cd-56ef-1234567890ab'
bodies=(
  '{"Description":"orders","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT","Tags":[{"TagKey":"team","TagValue":"payments"}]}'
  "{\"KeyId\":\"$key\",\"Description\":\"d\"}"
  "{\"KeyId\":\"$key\"}"
  "{\"KeyId\":\"arn:aws:kms:eu-west-1:111122223333:key/$key\"}"
  "{\"KeyId\":\"$key\",\"PendingWindowInDays\":7}"
  "{\"KeyId\":\"$key\"}"
  "{\"KeyId\":\"$key\",\"RotationPeriodInDays\":365}"
  "{\"KeyId\":\"$key\"}"
  "{\"KeyId\":\"$key\"}"
  "{\"KeyId\":\"$key\",\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"b\"}]}"
  "{\"KeyId\":\"$key\",\"TagKeys\":[\"a\"]}"
  "{\"AliasName\":\"alias/orders\",\"TargetKeyId\":\"$key\"}"
  "{\"AliasName\":\"alias/orders\",\"TargetKeyId\":\"$key\"}"
  '{"AliasName":"alias/orders"}'
  '{"KeyId":"alias/orders","GrantTokens":["token"]}'
  '{"Limit":10,"Marker":"m"}'
  "{\"KeyId\":\"$key\",\"Limit\":10}"
  "{\"KeyId\":\"$key\"}"
  "{\"KeyId\":\"$key\",\"IncludeKeyMaterial\":\"ALL_KEY_MATERIAL\",\"Limit\":5}"
  "{\"KeyId\":\"$key\",\"Limit\":5}"
  "{\"KeyId\":\"$key\",\"Plaintext\":\"aGVsbG8gd29ybGQ=\",\"EncryptionContext\":{\"purpose\":\"test\"},\"EncryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}"
  "{\"CiphertextBlob\":\"S0wBAAAA\",\"EncryptionContext\":{\"a\":\"b\"},\"KeyId\":\"$key\",\"DryRun\":true,\"DryRunModifiers\":[\"IGNORE_CIPHERTEXT\"]}"
  "{\"CiphertextBlob\":\"S0wB\",\"DestinationKeyId\":\"$key\",\"SourceEncryptionContext\":{},\"DestinationEncryptionContext\":{\"x\":\"y\"}}"
  "{\"KeyId\":\"$key\",\"KeySpec\":\"AES_256\",\"EncryptionContext\":{\"a\":\"b\"}}"
  "{\"KeyId\":\"$key\",\"NumberOfBytes\":32}"
  '{"NumberOfBytes":32}'
)
for i in "${!bodies[@]}"; do
  { printf "\\x$(printf '%02x' "$i")"; printf '%s' "${bodies[$i]}"; } > "$corpus/kms_request/op_$i"
done
echo "seeded $(find "$corpus" -type f | wc -l) files under $corpus"
