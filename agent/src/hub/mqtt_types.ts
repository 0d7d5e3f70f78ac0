// The part of mqtt.js (v5) the hub code uses, typed here: mqtt's own
// declarations pull in DOM types (web workers) that this project's
// TypeScript settings (lib ES2022, no skipLibCheck) cannot compile.
// The module itself is loaded with require() so its .d.ts is never read.

export interface MqttPacket {
  cmd: string;
  retain?: boolean;
  qos?: number;
  reasonCode?: number;
  properties?: Record<string, unknown>;
}

export interface MqttPublishOptions {
  qos: 0 | 1 | 2;
  retain?: boolean;
  properties?: { messageExpiryInterval?: number; contentType?: string; payloadFormatIndicator?: boolean };
}

export interface MqttGrant {
  topic: string;
  /** granted QoS, or a reason code >= 0x80 when refused */
  qos: number;
}

export interface MqttClientLike {
  connected: boolean;
  on(event: 'connect', listener: (connack: MqttPacket) => void): this;
  on(event: 'message', listener: (topic: string, payload: Buffer, packet: MqttPacket) => void): this;
  on(event: 'error', listener: (error: Error & { code?: number }) => void): this;
  on(event: 'close', listener: () => void): this;
  removeAllListeners(event?: string): this;
  publish(topic: string, payload: Buffer | string, options: MqttPublishOptions, callback: (error?: Error & { code?: number }) => void): this;
  subscribe(filters: Record<string, { qos: 0 | 1 | 2 }>, callback: (error: Error | null, granted?: MqttGrant[]) => void): this;
  unsubscribe(topics: string[], callback?: (error?: Error) => void): this;
  end(force?: boolean, options?: Record<string, unknown>, callback?: () => void): this;
  stream?: { destroy(): void; setNoDelay?(noDelay?: boolean): unknown };
}

export interface MqttConnectOptions {
  protocolVersion: 5;
  clientId: string;
  clean: boolean;
  reconnectPeriod: number;
  connectTimeout: number;
  keepalive: number;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  rejectUnauthorized: boolean;
  username?: string;
  password?: string;
  properties?: { maximumPacketSize?: number; sessionExpiryInterval?: number };
  will?: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean };
}

interface MqttModule {
  connect(url: string, options: MqttConnectOptions): MqttClientLike;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const mqtt: MqttModule = require('mqtt');
