package realtime_learning;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * Whether bytes are well-formed UTF-8. JSON text is UTF-8 (RFC 8259), and the parser checks only
 * the strings it decodes: the value of a field the job does not read is skipped unchecked, so an
 * event with stray bytes there would pass as readable.
 */
final class Utf8 {

    private Utf8() {
    }

    static boolean valid(byte[] bytes) {
        for (byte b : bytes) {
            if (b < 0) { // a byte above 0x7F: decode to check (ASCII, the common case, needs no decoder)
                try {
                    StandardCharsets.UTF_8.newDecoder()
                            .onMalformedInput(CodingErrorAction.REPORT)
                            .onUnmappableCharacter(CodingErrorAction.REPORT)
                            .decode(ByteBuffer.wrap(bytes));
                    return true;
                } catch (CharacterCodingException e) {
                    return false;
                }
            }
        }
        return true;
    }
}
