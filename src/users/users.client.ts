/**
 * What the other modules may ask of users. In one process the client is the service itself; in
 * split mode an HTTP client implements the same interface.
 */
export interface User {
  readonly id: string;
  readonly name: string;
  readonly balanceCents: number;
  readonly createdAt: string;
}

export interface IssuedUser {
  readonly id: string;
  readonly token: string;
}

export interface UsersClient {
  signUp(name: string): Promise<IssuedUser>;
  /** Creates `count` buyers with a starting balance in one statement (bench and drills). */
  createMany(count: number, balanceCents: number, namePrefix: string): Promise<IssuedUser[]>;
  /** Throws `USER_NOT_FOUND`. */
  getUser(id: string): Promise<User>;
}
